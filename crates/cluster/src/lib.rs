//! Running Basalt as many nodes that behave as one.
//!
//! - [`redis`]: the Redis component (one connection manager, or a cluster connection when several
//!   URLs are given), with a health flag that callers consult so a Redis outage degrades to the
//!   database and to per-node limits instead of failing requests.
//! - [`bus`]: small cross-node messages ("events committed up to N", "collections changed", …) over
//!   Redis pub/sub when Redis is configured, else PostgreSQL LISTEN/NOTIFY, else nothing (one node).
//!   Messages are hints: the outbox and the tables stay the truth, and a (re)connected subscriber
//!   gets a [`bus::Msg::Resync`] that makes the node reload everything it caches.
//! - [`registry`]: the `_nodes` table: each node's address, role, version, state and tail position,
//!   refreshed by a heartbeat; a node that stops heartbeating drops out of the live set.

/// The Redis driver, for callers that build commands.
pub use ::redis as driver;

pub mod bus;
pub mod redis;
pub mod registry;

/// Unix milliseconds on this node's clock (nodes are expected to run NTP; leases and liveness
/// tolerate a skew well under a second).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
