//! The node registry: `_nodes(id, address, role, version, started, heartbeat, tail, state)`.
//!
//! Each node upserts its row every [`HEARTBEAT`] (its tail position included, so the outbox pruner
//! on any node keeps what a live node has not read yet), and reads the others. A node whose heartbeat
//! is older than [`DEAD_AFTER`] is not live: it is left out of the cluster view and of the prune
//! floor; rows older than [`FORGET_AFTER`] are deleted. A node that stops gracefully deletes its row.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use basalt_core::sql::{Dialect, Sql, Value};
use basalt_store::{Store, StoreError};
use serde::Serialize;

use crate::now_ms;

pub const HEARTBEAT: Duration = Duration::from_secs(2);
pub const DEAD_AFTER_MS: i64 = 10_000;
pub const FORGET_AFTER_MS: i64 = 300_000;

pub fn tables(d: Dialect) -> Vec<Sql> {
    let int = match d {
        Dialect::Sqlite => "INTEGER",
        Dialect::Postgres => "BIGINT",
    };
    let mut s = Sql::new(d);
    s.push(&format!(
        "CREATE TABLE IF NOT EXISTS \"_nodes\" (\"id\" TEXT PRIMARY KEY, \"address\" TEXT NOT NULL, \
         \"role\" TEXT NOT NULL, \"version\" TEXT NOT NULL, \"started\" TEXT NOT NULL, \
         \"heartbeat\" {int} NOT NULL, \"tail\" {int} NOT NULL, \"state\" TEXT NOT NULL)"
    ));
    vec![s]
}

/// One node as the cluster view shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub id: String,
    pub address: String,
    pub role: String,
    pub version: String,
    pub started: String,
    /// Milliseconds since its last heartbeat.
    #[serde(rename = "heartbeatAgeMs")]
    pub heartbeat_age_ms: i64,
    pub tail: i64,
    /// `ready`, `draining` or `starting`.
    pub state: String,
    pub live: bool,
}

/// This node's entry and its view of the others.
pub struct Registry {
    store: Arc<dyn Store>,
    pub id: String,
    pub address: String,
    pub role: String,
    pub version: String,
    started: String,
    state: Mutex<&'static str>,
    view: Mutex<Vec<Node>>,
}

impl Registry {
    pub fn new(
        store: Arc<dyn Store>,
        id: &str,
        address: &str,
        role: &str,
        version: &str,
    ) -> Arc<Registry> {
        Arc::new(Registry {
            store,
            id: id.into(),
            address: address.into(),
            role: role.into(),
            version: version.into(),
            started: basalt_core::time::now(),
            state: Mutex::new("starting"),
            view: Mutex::new(Vec::new()),
        })
    }

    pub fn set_state(&self, s: &'static str) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    pub fn state(&self) -> &'static str {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last view read (every node, live or not, this one included).
    pub fn nodes(&self) -> Vec<Node> {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Writes this node's row and reads the cluster. Returns the lowest tail among the *other* live
    /// nodes (`i64::MAX` when there is none).
    pub async fn beat(&self, tail: i64) -> Result<i64, StoreError> {
        let d = self.store.dialect();
        let now = now_ms();
        let mut up = Sql::new(d);
        up.push("INSERT INTO \"_nodes\" (\"id\", \"address\", \"role\", \"version\", \"started\", \"heartbeat\", \"tail\", \"state\") VALUES (")
            .bind(Value::Text(self.id.clone()))
            .push(", ")
            .bind(Value::Text(self.address.clone()))
            .push(", ")
            .bind(Value::Text(self.role.clone()))
            .push(", ")
            .bind(Value::Text(self.version.clone()))
            .push(", ")
            .bind(Value::Text(self.started.clone()))
            .push(", ")
            .bind(Value::Int(now))
            .push(", ")
            .bind(Value::Int(tail))
            .push(", ")
            .bind(Value::Text(self.state().into()))
            .push(") ON CONFLICT (\"id\") DO UPDATE SET \"heartbeat\" = excluded.\"heartbeat\", \"tail\" = excluded.\"tail\", \"state\" = excluded.\"state\", \"address\" = excluded.\"address\"");
        let mut forget = Sql::new(d);
        forget
            .push("DELETE FROM \"_nodes\" WHERE \"heartbeat\" < ")
            .bind(Value::Int(now - FORGET_AFTER_MS));
        let mut tx = self.store.begin().await?;
        tx.execute(&up).await?;
        tx.execute(&forget).await?;
        tx.commit().await?;
        let mut q = Sql::new(d);
        q.push("SELECT \"id\", \"address\", \"role\", \"version\", \"started\", \"heartbeat\", \"tail\", \"state\" FROM \"_nodes\" ORDER BY \"started\", \"id\"");
        let rows = self.store.query(&q).await?;
        let mut view = Vec::new();
        let mut floor = i64::MAX;
        for r in rows.rows {
            if r.len() < 8 {
                continue;
            }
            let hb = r[5].as_i64();
            let live = now - hb <= DEAD_AFTER_MS;
            let n = Node {
                id: r[0].clone().into_string(),
                address: r[1].clone().into_string(),
                role: r[2].clone().into_string(),
                version: r[3].clone().into_string(),
                started: r[4].clone().into_string(),
                heartbeat_age_ms: (now - hb).max(0),
                tail: r[6].as_i64(),
                state: r[7].clone().into_string(),
                live,
            };
            if live && n.id != self.id {
                floor = floor.min(n.tail);
            }
            view.push(n);
        }
        *self.view.lock().unwrap_or_else(|p| p.into_inner()) = view;
        Ok(floor)
    }

    /// Removes this node's row (graceful stop).
    pub async fn leave(&self) -> Result<(), StoreError> {
        let mut q = Sql::new(self.store.dialect());
        q.push("DELETE FROM \"_nodes\" WHERE \"id\" = ")
            .bind(Value::Text(self.id.clone()));
        let mut tx = self.store.begin().await?;
        tx.execute(&q).await?;
        tx.commit().await
    }
}
