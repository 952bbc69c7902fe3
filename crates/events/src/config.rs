//! The `[events]` settings section: one sub-section per sink. A sink is enabled by being configured.

use serde::Deserialize;

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
    pub kafka: Option<KafkaConfig>,
    pub nats: Option<NatsConfig>,
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
            kafka: None,
            nats: None,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// The topic when `topic_per_collection` is false; the prefix (`<topic>.<collection>`) otherwise.
    pub topic: String,
    pub topic_per_collection: bool,
    /// Partitions of topics Basalt creates. A record's events always go to one partition (by key).
    pub partitions: i32,
    pub replication_factor: i16,
    /// How long one produce may retry inside the client before the batch fails and the sink backs off.
    pub retry_deadline_ms: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: vec!["127.0.0.1:9092".into()],
            topic: "basalt.records".into(),
            topic_per_collection: false,
            partitions: 1,
            replication_factor: 1,
            retry_deadline_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct NatsConfig {
    pub url: String,
    /// JetStream stream Basalt publishes to (created when missing, subjects `<subject_prefix>.>`).
    pub stream: String,
    /// Subjects are `<subject_prefix>.<collection>.<action>`.
    pub subject_prefix: String,
    /// JetStream's de-duplication window for `Nats-Msg-Id`, in seconds.
    pub duplicate_window_secs: u64,
    /// How long a publish waits for JetStream's acknowledgement before the batch is retried.
    pub ack_timeout_ms: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            stream: "BASALT".into(),
            subject_prefix: "basalt".into(),
            duplicate_window_secs: 120,
            ack_timeout_ms: 5_000,
        }
    }
}
