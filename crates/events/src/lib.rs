//! Basalt events: every record change becomes an [`Event`] written to the transactional outbox
//! (`_events`) in the same transaction as the change, then delivered at least once to each sink.
//!
//! Layout:
//! - [`outbox`]: the `_events` and `_event_cursors` tables: append (inside the writer's transaction),
//!   the safe high-water mark, reads, cursors and pruning.
//! - [`bus`]: the [`bus::EventBus`]: a tail task that feeds in-process consumers (realtime) in commit
//!   order, one runner per durable sink with its own persisted cursor and backoff, and the pruner.
//! - [`sink`]: the [`sink::Sink`] trait and each sink's health counters.
//! - [`sinks`]: the sink components (Kafka, NATS JetStream, RabbitMQ), one module each with its
//!   config section; [`webhook`]: the webhook sink and delivery worker.
//! - [`config`]: the typed `[events]` settings section.
//!
//! **Architecture Invariants:**
//! - An event row is written in the same transaction as the change it describes, so a change without
//!   its event (or the reverse) is never committed.
//! - Within one record, event sequence numbers follow commit order: the second writer of a row blocks on
//!   the first writer's row lock, and the event is appended after the row write.
//! - A reader never passes an event that a still-running transaction could commit below it: on SQLite
//!   there is one writer; on PostgreSQL writers hold a shared advisory lock from appending until commit,
//!   and the high-water mark is read under the exclusive lock (see [`outbox::high_water`]).
//! - A sink's cursor moves only after the sink acknowledged every event up to it; events are pruned only
//!   below every sink's cursor. Redelivery after a crash repeats the same event ids.

pub mod bus;
pub mod config;
pub mod egress;
pub mod outbox;
pub mod sink;
pub mod sinks;
pub mod webhook;

pub use sinks::{kafka, nats, rabbitmq};

use serde_json::{json, Map, Value as Json};

pub use bus::EventBus;
pub use config::EventsConfig;

/// The collection of the PII reveal audit, whose events are typed `basalt.pii.revealed`.
pub const PII_AUDIT: &str = "_piiAudit";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "create" => Some(Action::Create),
            "update" => Some(Action::Update),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }
    /// The CloudEvents `type`.
    pub fn event_type(self) -> &'static str {
        match self {
            Action::Create => "basalt.record.created",
            Action::Update => "basalt.record.updated",
            Action::Delete => "basalt.record.deleted",
        }
    }
}

/// One record change.
#[derive(Debug, Clone)]
pub struct Event {
    /// Outbox sequence number: commit order per record; 0 until stored.
    pub seq: i64,
    /// Stable id (CloudEvents `id`): the same on every redelivery, for consumers to de-duplicate.
    pub id: String,
    pub action: Action,
    pub collection_id: String,
    pub collection: String,
    pub record_id: String,
    /// When the change was made, RFC 3339 UTC.
    pub time: String,
    /// The record after the change (`None` for deletes).
    pub record: Option<Map<String, Json>>,
    /// The record before the change (updates and deletes).
    pub before: Option<Map<String, Json>>,
    /// The W3C `traceparent` of the request that made the change, when it was traced: every sink
    /// passes it on (HTTP and message headers, the CloudEvent's `traceparent` extension), so a
    /// consumer continues the same trace.
    pub traceparent: Option<String>,
    /// The plaintext of the change's pii values, sealed for sinks configured to reveal them
    /// (`reveal_pii`): opaque here, opened by the service. Never part of the CloudEvent; every
    /// other consumer sees the masks in `record`/`before`.
    pub sealed: Option<String>,
}

impl Event {
    pub fn new(
        action: Action,
        collection_id: &str,
        collection: &str,
        record_id: &str,
        record: Option<Map<String, Json>>,
        before: Option<Map<String, Json>>,
    ) -> Event {
        Event {
            seq: 0,
            id: format!("evt_{}", basalt_core::id::random_id(24)),
            action,
            collection_id: collection_id.into(),
            collection: collection.into(),
            record_id: record_id.into(),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            record,
            before,
            traceparent: None,
            sealed: None,
        }
    }

    /// The record a subscriber sees: after the change, or as it was for a delete.
    pub fn visible_record(&self) -> Option<&Map<String, Json>> {
        self.record.as_ref().or(self.before.as_ref())
    }

    /// `collection/recordId`, the CloudEvents `subject`.
    pub fn subject(&self) -> String {
        format!("{}/{}", self.collection, self.record_id)
    }

    /// The CloudEvents `data`.
    pub fn data(&self) -> Json {
        let mut d = Map::new();
        d.insert("action".into(), json!(self.action.as_str()));
        d.insert("collectionId".into(), json!(self.collection_id));
        d.insert("collectionName".into(), json!(self.collection));
        d.insert(
            "record".into(),
            self.record.clone().map(Json::Object).unwrap_or(Json::Null),
        );
        if let Some(b) = &self.before {
            d.insert("before".into(), Json::Object(b.clone()));
        }
        Json::Object(d)
    }

    /// The CloudEvents `type`: `basalt.record.<action>`, and `basalt.pii.revealed` for the rows of
    /// the PII reveal audit (`_piiAudit`).
    pub fn event_type(&self) -> &'static str {
        if self.collection == PII_AUDIT {
            "basalt.pii.revealed"
        } else {
            self.action.event_type()
        }
    }

    /// The event as CloudEvents 1.0 structured JSON.
    pub fn cloudevent(&self, source: &str) -> Json {
        let mut ce = json!({
            "specversion": "1.0",
            "id": self.id,
            "source": source,
            "type": self.event_type(),
            "subject": self.subject(),
            "time": self.time,
            "datacontenttype": "application/json",
            "data": self.data(),
        });
        // The CloudEvents distributed-tracing extension.
        if let (Some(tp), Json::Object(m)) = (&self.traceparent, &mut ce) {
            m.insert("traceparent".into(), json!(tp));
        }
        ce
    }
}

/// Drops fields no event may carry (password hashes, token keys) from a record.
pub fn scrub(mut record: Map<String, Json>, secret_fields: &[&str]) -> Map<String, Json> {
    for f in secret_fields {
        record.remove(*f);
    }
    record
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cloudevent_has_the_spec_fields_and_before_only_when_known() {
        let mut r = Map::new();
        r.insert("id".into(), json!("abc"));
        let ev = Event::new(
            Action::Create,
            "pbc_1",
            "posts",
            "abc",
            Some(r.clone()),
            None,
        );
        let ce = ev.cloudevent("/basalt");
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["type"], "basalt.record.created");
        assert_eq!(ce["subject"], "posts/abc");
        assert!(ce["id"].as_str().unwrap().starts_with("evt_"));
        assert!(ce["time"].as_str().unwrap().ends_with('Z'));
        assert!(ce["data"].get("before").is_none());
        let del = Event::new(Action::Delete, "pbc_1", "posts", "abc", None, Some(r));
        let ce = del.cloudevent("/basalt");
        assert!(ce["data"]["record"].is_null());
        assert_eq!(ce["data"]["before"]["id"], "abc");
        assert_eq!(del.visible_record().unwrap()["id"], "abc");
        assert_ne!(ev.id, del.id, "every event has its own id");
    }

    #[test]
    fn webhook_signature_is_hmac_sha256_over_timestamp_and_body() {
        // Reference value: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'whsec-0123456789abcdef'
        let s = webhook::sign("whsec-0123456789abcdef", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            s,
            "t=1700000000,v1=d77c78ac4da074c56908b55eac30358b2a7bfc573be4c76819af5102e8dcf939"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        for attempt in 0..30 {
            let d = sink::backoff(attempt, 100, 5_000).as_millis() as u64;
            let base = (100u64 << attempt.min(20)).min(5_000);
            assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d} ms");
        }
    }
}
