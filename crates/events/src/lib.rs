//! Basalt events: every record change becomes an [`Event`] written to the transactional outbox
//! (`_events`) in the same transaction as the change, then delivered at least once to each sink.
//!
//! Layout:
//! - [`outbox`]: the `_events` and `_event_cursors` tables: append (inside the writer's transaction),
//!   the safe high-water mark, reads, cursors and pruning.
//! - [`bus`]: the [`bus::EventBus`]: a tail task that feeds in-process consumers (realtime) in commit
//!   order, one runner per durable sink with its own persisted cursor and backoff, and the pruner.
//! - [`sink`]: the [`sink::Sink`] trait and each sink's health counters.
//! - [`webhook`], [`kafka`], [`nats`]: the sinks.
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
pub mod kafka;
pub mod nats;
pub mod outbox;
pub mod sink;
pub mod webhook;

use serde_json::{json, Map, Value as Json};

pub use bus::EventBus;
pub use config::EventsConfig;

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

    /// The event as CloudEvents 1.0 structured JSON.
    pub fn cloudevent(&self, source: &str) -> Json {
        json!({
            "specversion": "1.0",
            "id": self.id,
            "source": source,
            "type": self.action.event_type(),
            "subject": self.subject(),
            "time": self.time,
            "datacontenttype": "application/json",
            "data": self.data(),
        })
    }
}

/// Drops fields no event may carry (password hashes, token keys) from a record.
pub fn scrub(mut record: Map<String, Json>, secret_fields: &[&str]) -> Map<String, Json> {
    for f in secret_fields {
        record.remove(*f);
    }
    record
}
