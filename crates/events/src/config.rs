//! The `[events]` settings section. Each sink kind's section is defined by its component in
//! [`crate::sinks`]; a sink is enabled by being configured, and a kind may be configured several
//! times (`[[events.kafka]]` with distinct `name`s) to deliver to several clusters.

use serde::Deserialize;

pub use crate::sinks::kafka::KafkaConfig;
pub use crate::sinks::nats::NatsConfig;
pub use crate::sinks::rabbitmq::RabbitMqConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct EventsConfig {
    /// CloudEvents `source` of every event.
    pub source: String,
    /// How often the dispatcher looks for events when no local commit woke it (other processes'
    /// writes, retries), in milliseconds.
    pub poll_ms: u64,
    /// How often acknowledged events are pruned from the outbox, in milliseconds.
    pub prune_ms: u64,
    /// Events read per batch.
    pub batch: i64,
    /// Backoff after a failed sink delivery: first wait and cap, in milliseconds (doubling, with jitter).
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    pub webhooks: WebhooksConfig,
    /// `[events.kafka]` (one) or `[[events.kafka]]` (several).
    #[serde(deserialize_with = "crate::sinks::one_or_many")]
    pub kafka: Vec<KafkaConfig>,
    #[serde(deserialize_with = "crate::sinks::one_or_many")]
    pub nats: Vec<NatsConfig>,
    #[serde(deserialize_with = "crate::sinks::one_or_many")]
    pub rabbitmq: Vec<RabbitMqConfig>,
}

impl EventsConfig {
    /// Whether any sink is configured to receive pii values in clear: writes then seal them into
    /// their event ([`crate::Event::sealed`]).
    pub fn reveals_pii(&self) -> bool {
        self.kafka.iter().any(|k| k.reveal_pii)
            || self.nats.iter().any(|n| n.reveal_pii)
            || self.rabbitmq.iter().any(|r| r.reveal_pii)
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            source: "/basalt".into(),
            poll_ms: 500,
            prune_ms: 1_000,
            batch: 500,
            retry_min_ms: 200,
            retry_max_ms: 30_000,
            webhooks: WebhooksConfig::default(),
            kafka: Vec::new(),
            nats: Vec::new(),
            rabbitmq: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct WebhooksConfig {
    /// Attempts per delivery before it goes to the dead-letter list (a webhook may set its own).
    pub max_attempts: u32,
    /// Retry backoff: first wait and cap, in milliseconds (doubling, full jitter).
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// Per-attempt timeout, in milliseconds (a webhook may set its own).
    pub timeout_ms: u64,
    /// Concurrent deliveries per webhook (a webhook may set its own).
    pub concurrency: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            max_attempts: 10,
            backoff_min_ms: 1_000,
            backoff_max_ms: 300_000,
            timeout_ms: 10_000,
            concurrency: 4,
        }
    }
}
