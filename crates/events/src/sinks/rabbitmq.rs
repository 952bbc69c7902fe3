//! RabbitMQ sink (AMQP 0-9-1, lapin). Events go to a durable topic exchange with routing key
//! `<collection>.<action>`, as persistent messages (`delivery_mode` 2) whose `message_id` is the event
//! id and whose body is the CloudEvent. The channel is in confirm mode: a batch counts as delivered
//! only when the broker acknowledged every message (a nack or a timeout fails the batch, which the bus
//! retries; a redelivered event keeps its `message_id`). With `queue` set, Basalt also declares that
//! durable queue bound to the exchange (`#`), so events are kept before any consumer exists.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::sink::Sink;
use crate::Event;

/// The `[events.rabbitmq]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct RabbitMqConfig {
    /// Tells several RabbitMQ sinks apart: the sink is `rabbitmq`, or `rabbitmq:<name>`.
    pub name: String,
    /// `amqp://user:password@host:5672/<vhost>` (never logged; plain TCP).
    pub url: String,
    /// The topic exchange events are published to (declared durable when missing).
    pub exchange: String,
    /// A durable queue to declare and bind to the exchange with `#` (empty: none; bind your own).
    pub queue: String,
    /// How long a batch's publishes and confirmations may take before it is retried.
    pub confirm_timeout_ms: u64,
    /// Deliver pii values in clear instead of their masks (a trusted consumer; see the README's
    /// PII section). Every node that writes must have the same setting: writers seal the values.
    pub reveal_pii: bool,
}

impl Default for RabbitMqConfig {
    fn default() -> Self {
        RabbitMqConfig {
            name: String::new(),
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            exchange: "basalt".into(),
            queue: String::new(),
            confirm_timeout_ms: 5_000,
            reveal_pii: false,
        }
    }
}

pub struct RabbitMqSink {
    name: String,
    cfg: RabbitMqConfig,
    source: String,
    state: Mutex<Option<(Connection, Channel)>>,
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

impl RabbitMqSink {
    pub fn new(cfg: RabbitMqConfig, source: &str) -> RabbitMqSink {
        RabbitMqSink {
            name: super::sink_name("rabbitmq", &cfg.name),
            cfg,
            source: source.into(),
            state: Mutex::new(None),
        }
    }

    /// `<collection>.<action>`.
    pub fn routing_key(ev: &Event) -> String {
        format!("{}.{}", ev.collection, ev.action.as_str())
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.confirm_timeout_ms.max(100))
    }

    /// Connects, opens a channel in confirm mode and declares the exchange (and queue), all within
    /// 5 s: a broker that accepts the connection and then stalls cannot hold the sink.
    async fn connect(&self) -> Result<(Connection, Channel), String> {
        tokio::time::timeout(Duration::from_secs(5), self.open())
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "connecting to {} timed out",
                    redacted(&self.cfg.url)
                ))
            })
    }

    async fn open(&self) -> Result<(Connection, Channel), String> {
        let at = redacted(&self.cfg.url);
        let props = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        let conn = Connection::connect(&self.cfg.url, props)
            .await
            .map_err(|e| format!("connecting to {at}: {e}"))?;
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| format!("opening a channel: {e}"))?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("confirm mode: {e}"))?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            &self.cfg.exchange,
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("exchange {}: {e}", self.cfg.exchange))?;
        if !self.cfg.queue.is_empty() {
            let q = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            ch.queue_declare(&self.cfg.queue, q, FieldTable::default())
                .await
                .map_err(|e| format!("queue {}: {e}", self.cfg.queue))?;
            ch.queue_bind(
                &self.cfg.queue,
                &self.cfg.exchange,
                "#",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("binding queue {}: {e}", self.cfg.queue))?;
        }
        Ok((conn, ch))
    }

    /// Publishes the batch, then waits for every confirmation (the whole within the confirm timeout).
    async fn publish(&self, ch: &Channel, events: &[Arc<Event>]) -> Result<(), String> {
        tokio::time::timeout(self.timeout(), self.publish_all(ch, events))
            .await
            .unwrap_or_else(|_| Err("publishing timed out".into()))
    }

    async fn publish_all(&self, ch: &Channel, events: &[Arc<Event>]) -> Result<(), String> {
        fn trace_headers(ev: &Event) -> FieldTable {
            let mut t = FieldTable::default();
            if let Some(tp) = &ev.traceparent {
                t.insert(
                    "traceparent".into(),
                    lapin::types::AMQPValue::LongString(tp.clone().into()),
                );
            }
            t
        }
        let mut confirms = Vec::with_capacity(events.len());
        for ev in events {
            let body = ev.cloudevent(&self.source).to_string();
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(ev.id.clone().into())
                .with_content_type("application/cloudevents+json".into())
                .with_type(ev.event_type().into())
                .with_headers(trace_headers(ev));
            let c = ch
                .basic_publish(
                    &self.cfg.exchange,
                    &Self::routing_key(ev),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    props,
                )
                .await
                .map_err(|e| format!("publishing: {e}"))?;
            confirms.push(c);
        }
        for c in confirms {
            match c.await.map_err(|e| format!("confirmation: {e}"))? {
                Confirmation::Nack(_) => return Err("the broker refused a message".to_string()),
                Confirmation::Ack(_) | Confirmation::NotRequested => {}
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for RabbitMqSink {
    fn name(&self) -> &str {
        &self.name
    }
    async fn probe(&self) -> Result<(), String> {
        *self.state.lock().await = Some(self.connect().await?);
        Ok(())
    }
    fn reveals_pii(&self) -> bool {
        self.cfg.reveal_pii
    }

    async fn deliver(&self, events: &[Arc<Event>]) -> Result<(), String> {
        let mut g = self.state.lock().await;
        if g.as_ref()
            .is_none_or(|(c, ch)| !c.status().connected() || !ch.status().connected())
        {
            *g = Some(self.connect().await?);
        }
        let Some((_, ch)) = g.as_ref() else {
            return Err("not connected".into());
        };
        let r = self.publish(ch, events).await;
        if r.is_err() {
            // A fresh connection next time (the broker may have restarted).
            *g = None;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_and_keys_routed() {
        assert_eq!(
            redacted("amqp://guest:secret@host:5672/%2f"),
            "amqp://…@host:5672/%2f"
        );
        assert_eq!(redacted("amqp://host"), "amqp://host");
    }
}
