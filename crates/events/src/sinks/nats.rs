//! NATS JetStream sink (async-nats). Subjects are `<prefix>.<collection>.<action>`; every message
//! carries `Nats-Msg-Id: <event id>`, so JetStream drops a redelivered event inside the stream's
//! duplicate window. A batch is published pipelined and counts as delivered only when every publish
//! acknowledgement came back; the stream is created when missing (and re-checked after a failure).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::sink::Sink;
use crate::Event;
use serde::Deserialize;

/// The `[events.nats]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct NatsConfig {
    /// Tells several NATS sinks apart: the sink (and its cursor) is `nats`, or `nats:<name>`.
    pub name: String,
    pub url: String,
    /// JetStream stream Basalt publishes to (created when missing, subjects `<subject_prefix>.>`).
    pub stream: String,
    /// Subjects are `<subject_prefix>.<collection>.<action>`.
    pub subject_prefix: String,
    /// JetStream's de-duplication window for `Nats-Msg-Id`, in seconds.
    pub duplicate_window_secs: u64,
    /// How long a publish waits for JetStream's acknowledgement before the batch is retried.
    pub ack_timeout_ms: u64,
    /// Deliver pii values in clear instead of their masks (a trusted consumer; see the README's
    /// PII section). Every node that writes must have the same setting: writers seal the values.
    pub reveal_pii: bool,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            name: String::new(),
            url: "nats://127.0.0.1:4222".into(),
            stream: "BASALT".into(),
            subject_prefix: "basalt".into(),
            duplicate_window_secs: 120,
            ack_timeout_ms: 5_000,
            reveal_pii: false,
        }
    }
}

pub struct NatsSink {
    name: String,
    cfg: NatsConfig,
    source: String,
    state: Mutex<Option<(async_nats::jetstream::Context, bool)>>,
}

impl NatsSink {
    pub fn new(cfg: NatsConfig, source: &str) -> NatsSink {
        NatsSink {
            name: super::sink_name("nats", &cfg.name),
            cfg,
            source: source.into(),
            state: Mutex::new(None),
        }
    }

    pub fn subject(&self, ev: &Event) -> String {
        format!(
            "{}.{}.{}",
            self.cfg.subject_prefix,
            ev.collection,
            ev.action.as_str()
        )
    }

    fn context(&self, client: async_nats::Client) -> async_nats::jetstream::Context {
        async_nats::jetstream::ContextBuilder::new()
            .timeout(Duration::from_millis(self.cfg.ack_timeout_ms.max(100)))
            .build(client)
    }

    async fn connect(&self) -> Result<async_nats::Client, String> {
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .name("basalt")
            .connect(self.cfg.url.as_str())
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.cfg.url))
    }

    async fn publish(
        &self,
        js: &async_nats::jetstream::Context,
        events: &[Arc<Event>],
    ) -> Result<(), String> {
        let mut acks = Vec::with_capacity(events.len());
        for ev in events {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", ev.id.as_str());
            h.insert("Ce-Type", ev.event_type());
            if let Some(tp) = &ev.traceparent {
                h.insert("traceparent", tp.as_str());
            }
            let body = ev.cloudevent(&self.source).to_string();
            let ack = js
                .publish_with_headers(self.subject(ev), h, body.into())
                .await
                .map_err(|e| format!("publishing: {e}"))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(|e| format!("publish acknowledgement: {e}"))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for NatsSink {
    fn name(&self) -> &str {
        &self.name
    }
    async fn probe(&self) -> Result<(), String> {
        let client = self.connect().await?;
        *self.state.lock().await = Some((self.context(client), false));
        Ok(())
    }
    fn reveals_pii(&self) -> bool {
        self.cfg.reveal_pii
    }

    async fn deliver(&self, events: &[Arc<Event>]) -> Result<(), String> {
        let mut g = self.state.lock().await;
        if g.is_none() {
            let client = self.connect().await?;
            *g = Some((self.context(client), false));
        }
        let Some((js, ready)) = g.as_mut() else {
            return Err("not connected".into());
        };
        if !*ready {
            js.get_or_create_stream(async_nats::jetstream::stream::Config {
                name: self.cfg.stream.clone(),
                subjects: vec![format!("{}.>", self.cfg.subject_prefix)],
                duplicate_window: Duration::from_secs(self.cfg.duplicate_window_secs.max(1)),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("stream {}: {e}", self.cfg.stream))?;
            *ready = true;
        }
        let r = self.publish(js, events).await;
        if r.is_err() {
            *ready = false;
        }
        r
    }
}
