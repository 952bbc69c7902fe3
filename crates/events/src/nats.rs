//! NATS JetStream sink (async-nats). Subjects are `<prefix>.<collection>.<action>`; every message
//! carries `Nats-Msg-Id: <event id>`, so JetStream drops a redelivered event inside the stream's
//! duplicate window. A batch is published pipelined and counts as delivered only when every publish
//! acknowledgement came back; the stream is created when missing (and re-checked after a failure).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::config::NatsConfig;
use crate::sink::Sink;
use crate::Event;

pub struct NatsSink {
    cfg: NatsConfig,
    source: String,
    state: Mutex<Option<(async_nats::jetstream::Context, bool)>>,
}

impl NatsSink {
    pub fn new(cfg: NatsConfig, source: &str) -> NatsSink {
        NatsSink {
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
            h.insert("Ce-Type", ev.action.event_type());
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
        "nats"
    }
    async fn probe(&self) -> Result<(), String> {
        let client = self.connect().await?;
        *self.state.lock().await = Some((self.context(client), false));
        Ok(())
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
