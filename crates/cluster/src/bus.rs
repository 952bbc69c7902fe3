//! Cross-node messages. They only say *that* something changed; what changed is read from the
//! database (the outbox, `_collections`, `_params`, `_webhooks`), so a lost message costs latency,
//! never correctness: the event tail also polls, and every (re)subscription delivers
//! [`Msg::Resync`], after which a node reloads what it caches.
//!
//! Transports, in order of preference: Redis pub/sub (channel `basalt:cluster`) when Redis is
//! configured; PostgreSQL `LISTEN`/`NOTIFY` (channel `basalt_cluster`) when the database is
//! PostgreSQL; none for a single SQLite node.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::redis::Redis;

const REDIS_CHANNEL: &str = "basalt:cluster";
const PG_CHANNEL: &str = "basalt_cluster";

/// What another node tells this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "lowercase")]
pub enum Msg {
    /// Events up to `seq` are committed: wake the event tail.
    Events { seq: i64 },
    /// Collection definitions changed (or a collection was truncated): reload them, drop cached rows.
    Collections,
    /// Settings changed: reload them.
    Settings,
    /// Webhook definitions changed: reload them.
    Webhooks,
    /// This node's subscription (re)started and may have missed messages: reload everything.
    Resync,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The sending node (a node ignores its own messages).
    n: String,
    #[serde(flatten)]
    m: Msg,
}

enum Transport {
    None,
    Redis(Arc<Redis>),
    Postgres {
        url: String,
        store: Arc<dyn basalt_store::Store>,
    },
}

pub struct ClusterBus {
    node: String,
    transport: Transport,
    tx: broadcast::Sender<Msg>,
    /// The newest committed sequence to announce; a publisher task coalesces bursts into one message.
    events: watch::Sender<i64>,
}

impl ClusterBus {
    /// Chooses the transport: Redis if given, else PostgreSQL LISTEN/NOTIFY if `pg_url` is given,
    /// else none. Starts the subscriber and the event announcer.
    pub fn start(
        node: &str,
        redis: Option<Arc<Redis>>,
        pg_url: Option<String>,
        store: Arc<dyn basalt_store::Store>,
    ) -> Arc<ClusterBus> {
        let transport = match (redis, pg_url) {
            (Some(r), _) => Transport::Redis(r),
            (None, Some(url)) => Transport::Postgres { url, store },
            _ => Transport::None,
        };
        let (tx, _) = broadcast::channel(1024);
        let (events, _) = watch::channel(0);
        let bus = Arc::new(ClusterBus {
            node: node.into(),
            transport,
            tx,
            events,
        });
        match &bus.transport {
            Transport::None => {}
            Transport::Redis(_) => {
                tokio::spawn(bus.clone().subscribe_redis());
            }
            Transport::Postgres { .. } => {
                tokio::spawn(bus.clone().subscribe_pg());
            }
        }
        if !matches!(bus.transport, Transport::None) {
            tokio::spawn(bus.clone().announce_events());
        }
        bus
    }

    /// The transport's name, for health.
    pub fn transport(&self) -> &'static str {
        match self.transport {
            Transport::None => "none",
            Transport::Redis(_) => "redis",
            Transport::Postgres { .. } => "postgres",
        }
    }

    /// Messages from other nodes.
    pub fn subscribe(&self) -> broadcast::Receiver<Msg> {
        self.tx.subscribe()
    }

    /// Notes that this node committed events up to `seq`; other nodes' tails are woken soon after
    /// (bursts are coalesced into one message).
    pub fn events_committed(&self, seq: i64) {
        if !matches!(self.transport, Transport::None) {
            self.events.send_if_modified(|v| {
                let newer = seq > *v;
                if newer {
                    *v = seq;
                }
                newer
            });
        }
    }

    /// Tells the other nodes (best effort; see the module docs).
    pub async fn publish(&self, m: Msg) {
        let body = match serde_json::to_string(&Envelope {
            n: self.node.clone(),
            m,
        }) {
            Ok(b) => b,
            Err(_) => return,
        };
        let r = match &self.transport {
            Transport::None => Ok(()),
            Transport::Redis(r) => {
                if !r.is_up() {
                    return;
                }
                r.query::<i64>(redis::cmd("PUBLISH").arg(REDIS_CHANNEL).arg(&body))
                    .await
                    .map(|_| ())
            }
            Transport::Postgres { store, .. } => {
                let mut q = basalt_core::sql::Sql::new(store.dialect());
                q.push(&format!("SELECT pg_notify('{PG_CHANNEL}', "))
                    .bind(basalt_core::sql::Value::Text(body))
                    .push(")");
                store.query(&q).await.map(|_| ()).map_err(|e| e.to_string())
            }
        };
        if let Err(e) = r {
            tracing::debug!(error = %e, "cluster message not sent");
        }
    }

    async fn announce_events(self: Arc<Self>) {
        let mut rx = self.events.subscribe();
        while rx.changed().await.is_ok() {
            let seq = *rx.borrow_and_update();
            self.publish(Msg::Events { seq }).await;
        }
    }

    fn deliver(&self, payload: &str) {
        match serde_json::from_str::<Envelope>(payload) {
            Ok(e) if e.n != self.node => {
                let _ = self.tx.send(e.m);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "ignoring a malformed cluster message"),
        }
    }

    async fn subscribe_redis(self: Arc<Self>) {
        let Transport::Redis(r) = &self.transport else {
            return;
        };
        let mut failures = 0u32;
        loop {
            match r.pubsub().await {
                Ok(mut ps) => match ps.subscribe(REDIS_CHANNEL).await {
                    Ok(()) => {
                        if failures > 0 {
                            tracing::info!("cluster messages: resubscribed to redis");
                        }
                        failures = 0;
                        let _ = self.tx.send(Msg::Resync);
                        let mut stream = ps.on_message();
                        while let Some(m) = stream.next().await {
                            if let Ok(p) = m.get_payload::<String>() {
                                self.deliver(&p);
                            }
                        }
                        tracing::warn!("cluster messages: redis subscription ended; reconnecting");
                    }
                    Err(e) => tracing::warn!(error = %e, "cluster messages: subscribing failed"),
                },
                Err(e) => {
                    if failures == 0 {
                        tracing::warn!(error = %e, "cluster messages: redis unreachable; retrying (the event tail polls meanwhile)");
                    }
                }
            }
            failures += 1;
            tokio::time::sleep(Duration::from_millis((250 * failures as u64).min(2_000))).await;
        }
    }

    async fn subscribe_pg(self: Arc<Self>) {
        let Transport::Postgres { url, .. } = &self.transport else {
            return;
        };
        let mut failures = 0u32;
        loop {
            match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
                Ok((client, mut conn)) => {
                    let (ntx, mut nrx) = tokio::sync::mpsc::unbounded_channel::<String>();
                    let driver = tokio::spawn(async move {
                        loop {
                            match futures_util::future::poll_fn(|cx| conn.poll_message(cx)).await {
                                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                                    if ntx.send(n.payload().to_string()).is_err() {
                                        return;
                                    }
                                }
                                Some(Ok(_)) => {}
                                Some(Err(e)) => {
                                    tracing::warn!(error = %e, "cluster messages: LISTEN connection failed");
                                    return;
                                }
                                None => return,
                            }
                        }
                    });
                    match client.batch_execute(&format!("LISTEN {PG_CHANNEL}")).await {
                        Ok(()) => {
                            failures = 0;
                            let _ = self.tx.send(Msg::Resync);
                            while let Some(p) = nrx.recv().await {
                                self.deliver(&p);
                            }
                            tracing::warn!(
                                "cluster messages: LISTEN connection ended; reconnecting"
                            );
                        }
                        Err(e) => tracing::warn!(error = %e, "cluster messages: LISTEN failed"),
                    }
                    driver.abort();
                }
                Err(e) => {
                    if failures == 0 {
                        tracing::warn!(error = %e, "cluster messages: connecting for LISTEN failed; retrying");
                    }
                }
            }
            failures += 1;
            tokio::time::sleep(Duration::from_millis((250 * failures as u64).min(2_000))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_in_their_wire_shape() {
        let e = Envelope {
            n: "node1".into(),
            m: Msg::Events { seq: 42 },
        };
        let s = serde_json::to_string(&e).unwrap_or_default();
        assert_eq!(s, r#"{"n":"node1","k":"events","seq":42}"#);
        let back: Envelope = serde_json::from_str(&s).expect("parses");
        assert_eq!(back.m, Msg::Events { seq: 42 });
        let c: Envelope = serde_json::from_str(r#"{"n":"x","k":"collections"}"#).expect("parses");
        assert_eq!(c.m, Msg::Collections);
    }
}
