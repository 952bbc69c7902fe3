//! Kafka sink (rskafka, pure Rust). One topic, or one per collection (`<topic>.<collection>`); the key
//! is the record id and the partition is chosen from it (CRC32 mod partitions), so one record's events
//! stay in one partition, in order. Each batch is produced per partition in sequence order; the cursor
//! moves only when the broker acknowledged every record (acks=all as rskafka sends them).
//!
//! rskafka has no idempotent producer (no producer id / sequence numbers), so a batch retried after a
//! broker failure may be written twice; duplicates carry the same `ce_id` header and value `id`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use rskafka::BackoffConfig;
use tokio::sync::Mutex;

use crate::sink::Sink;
use crate::Event;
use serde::Deserialize;

/// The `[events.kafka]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct KafkaConfig {
    /// Tells several Kafka sinks apart: the sink (and its cursor) is `kafka`, or `kafka:<name>`.
    pub name: String,
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
    /// Deliver pii values in clear instead of their masks (a trusted consumer; see the README's
    /// PII section). Every node that writes must have the same setting: writers seal the values.
    pub reveal_pii: bool,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            name: String::new(),
            brokers: vec!["127.0.0.1:9092".into()],
            topic: "basalt.records".into(),
            topic_per_collection: false,
            partitions: 1,
            replication_factor: 1,
            retry_deadline_ms: 10_000,
            reveal_pii: false,
        }
    }
}

pub struct KafkaSink {
    name: String,
    cfg: KafkaConfig,
    source: String,
    state: Mutex<Option<Conn>>,
}

struct Conn {
    client: Client,
    /// Partition count per topic (topics are created on first use).
    topics: HashMap<String, i32>,
    partitions: HashMap<(String, i32), Arc<PartitionClient>>,
}

impl KafkaSink {
    pub fn new(cfg: KafkaConfig, source: &str) -> KafkaSink {
        KafkaSink {
            name: super::sink_name("kafka", &cfg.name),
            cfg,
            source: source.into(),
            state: Mutex::new(None),
        }
    }

    /// The bound on one connect or produce: rskafka's own retries nest (a produce retries its
    /// reconnects), so the sink enforces the deadline itself and backs off on expiry.
    fn op_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.retry_deadline_ms.max(100))
    }

    fn topic_for(&self, ev: &Event) -> String {
        if self.cfg.topic_per_collection {
            format!("{}.{}", self.cfg.topic, ev.collection)
        } else {
            self.cfg.topic.clone()
        }
    }

    async fn connect(&self) -> Result<Conn, String> {
        let client = ClientBuilder::new(self.cfg.brokers.clone())
            .client_id("basalt")
            .backoff_config(BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
                deadline: Some(Duration::from_millis(self.cfg.retry_deadline_ms.max(100))),
            })
            .build()
            .await
            .map_err(|e| format!("connecting to {:?}: {e}", self.cfg.brokers))?;
        Ok(Conn {
            client,
            topics: HashMap::new(),
            partitions: HashMap::new(),
        })
    }

    async fn partitions_of(&self, conn: &mut Conn, topic: &str) -> Result<i32, String> {
        if let Some(n) = conn.topics.get(topic) {
            return Ok(*n);
        }
        let find = |topics: Vec<rskafka::topic::Topic>| {
            topics
                .into_iter()
                .find(|t| t.name == topic)
                .map(|t| t.partitions.len() as i32)
                .filter(|n| *n > 0)
        };
        let listed = conn.client.list_topics().await.map_err(|e| e.to_string())?;
        let n = match find(listed) {
            Some(n) => n,
            None => {
                let ctl = conn.client.controller_client().map_err(|e| e.to_string())?;
                if let Err(e) = ctl
                    .create_topic(
                        topic,
                        self.cfg.partitions.max(1),
                        self.cfg.replication_factor.max(1),
                        5_000,
                    )
                    .await
                {
                    tracing::debug!(topic, error = %e, "create_topic (it may exist already)");
                }
                let listed = conn.client.list_topics().await.map_err(|e| e.to_string())?;
                find(listed).unwrap_or(self.cfg.partitions.max(1))
            }
        };
        conn.topics.insert(topic.to_string(), n);
        Ok(n)
    }

    async fn produce_all(&self, conn: &mut Conn, events: &[Arc<Event>]) -> Result<(), String> {
        // Group by (topic, partition), keeping sequence order inside each group (a record's events
        // all land in one group; groups are independent).
        let mut groups: BTreeMap<(String, i32), Vec<Record>> = BTreeMap::new();
        for ev in events {
            let topic = self.topic_for(ev);
            let n = self.partitions_of(conn, &topic).await?;
            let p = (crc32fast::hash(ev.record_id.as_bytes()) % n.max(1) as u32) as i32;
            let mut headers = BTreeMap::new();
            headers.insert("ce_id".to_string(), ev.id.clone().into_bytes());
            headers.insert("ce_type".to_string(), ev.event_type().as_bytes().to_vec());
            headers.insert("ce_subject".to_string(), ev.subject().into_bytes());
            if let Some(tp) = &ev.traceparent {
                headers.insert("traceparent".to_string(), tp.clone().into_bytes());
            }
            groups.entry((topic, p)).or_default().push(Record {
                key: Some(ev.record_id.clone().into_bytes()),
                value: Some(ev.cloudevent(&self.source).to_string().into_bytes()),
                headers,
                timestamp: chrono::Utc::now(),
            });
        }
        for (key, records) in groups {
            let pc = match conn.partitions.get(&key) {
                Some(pc) => pc.clone(),
                None => {
                    let pc = Arc::new(
                        conn.client
                            .partition_client(key.0.clone(), key.1, UnknownTopicHandling::Retry)
                            .await
                            .map_err(|e| e.to_string())?,
                    );
                    conn.partitions.insert(key.clone(), pc.clone());
                    pc
                }
            };
            tokio::time::timeout(
                self.op_timeout(),
                pc.produce(records, Compression::NoCompression),
            )
            .await
            .map_err(|_| format!("producing to {}/{} timed out", key.0, key.1))?
            .map_err(|e| format!("producing to {}/{}: {e}", key.0, key.1))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }
    async fn probe(&self) -> Result<(), String> {
        let conn = tokio::time::timeout(self.op_timeout(), self.connect())
            .await
            .map_err(|_| "connecting to Kafka timed out".to_string())??;
        conn.client.list_topics().await.map_err(|e| e.to_string())?;
        *self.state.lock().await = Some(conn);
        Ok(())
    }
    fn reveals_pii(&self) -> bool {
        self.cfg.reveal_pii
    }

    async fn deliver(&self, events: &[Arc<Event>]) -> Result<(), String> {
        let mut g = self.state.lock().await;
        if g.is_none() {
            *g = Some(
                tokio::time::timeout(self.op_timeout(), self.connect())
                    .await
                    .map_err(|_| "connecting to Kafka timed out".to_string())??,
            );
        }
        let Some(conn) = g.as_mut() else {
            return Err("not connected".into());
        };
        // Metadata calls (list/create topic) retry inside rskafka too: bound the whole batch.
        let r = tokio::time::timeout(self.op_timeout() * 3, self.produce_all(conn, events))
            .await
            .unwrap_or_else(|_| Err("producing to Kafka timed out".to_string()));
        if r.is_err() {
            // Reconnect from scratch next time (the broker may have moved or restarted).
            *g = None;
        }
        r
    }
}
