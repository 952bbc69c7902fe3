//! The durable sinks as components (vector's model): each kind is one module holding its config
//! section, its builder and its delivery code, tested against the real server (`crates/http/tests/api/
//! events.rs`). [`build`] turns the `[events]` section into sinks; a kind may appear several times.
//!
//! | kind | module | delivery |
//! |---|---|---|
//! | Kafka | [`kafka`] | rskafka, key = record id, one partition per record |
//! | NATS JetStream | [`nats`] | async-nats, `Nats-Msg-Id` = event id (broker de-duplication) |
//! | RabbitMQ | [`rabbitmq`] | lapin, publisher confirms, persistent, `message_id` = event id |
//!
//! Webhooks are a sink too (`crate::webhook`), built by the service because their definitions live
//! in the database.

pub mod kafka;
pub mod nats;
pub mod rabbitmq;

use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use crate::config::EventsConfig;
use crate::sink::Sink;

/// A sink's name (its cursor's key): the kind, or `<kind>:<name>` when the section names itself.
pub fn sink_name(kind: &str, name: &str) -> String {
    if name.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}:{name}")
    }
}

/// Every sink the `[events]` section configures besides webhooks. Refuses two sinks with one name
/// (they would share a cursor).
pub fn build(cfg: &EventsConfig) -> Result<Vec<Arc<dyn Sink>>, String> {
    let mut out: Vec<Arc<dyn Sink>> = Vec::new();
    for k in &cfg.kafka {
        out.push(Arc::new(kafka::KafkaSink::new(k.clone(), &cfg.source)));
    }
    for n in &cfg.nats {
        out.push(Arc::new(nats::NatsSink::new(n.clone(), &cfg.source)));
    }
    for r in &cfg.rabbitmq {
        out.push(Arc::new(rabbitmq::RabbitMqSink::new(
            r.clone(),
            &cfg.source,
        )));
    }
    let mut names: Vec<&str> = out.iter().map(|s| s.name()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!(
            "two event sinks are named {:?}: give each section of one kind its own `name`",
            w[0]
        ));
    }
    Ok(out)
}

/// A section given once (`[events.kafka]`) or as a list (`[[events.kafka]]`).
pub fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(t) => vec![t],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> EventsConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_kind_may_be_configured_once_or_several_times() {
        let one = parse(serde_json::json!({"nats": {"url": "nats://a:4222"}}));
        assert_eq!(one.nats.len(), 1);
        let names: Vec<String> = build(&one)
            .unwrap()
            .iter()
            .map(|s| s.name().to_string())
            .collect();
        assert_eq!(names, ["nats"]);
        let two = parse(serde_json::json!({"kafka": [
            {"brokers": ["a:9092"]},
            {"name": "analytics", "brokers": ["b:9092"]}
        ], "rabbitmq": {"url": "amqp://h"}}));
        let names: Vec<String> = build(&two)
            .unwrap()
            .iter()
            .map(|s| s.name().to_string())
            .collect();
        assert_eq!(names, ["kafka", "kafka:analytics", "rabbitmq"]);
        let clash =
            parse(serde_json::json!({"kafka": [{"brokers": ["a:9092"]}, {"brokers": ["b:9092"]}]}));
        assert!(build(&clash).err().is_some_and(|e| e.contains("\"kafka\"")));
        assert!(serde_json::from_value::<EventsConfig>(
            serde_json::json!({"rabbitmq": {"nope": 1}})
        )
        .is_err());
    }
}
