//! The PII reveal audit queue (a component): every value revealed to a caller is noted here and
//! written, off the request path, to the append-only `_piiAudit` collection by
//! `pii::run_audit_writer`, each row with its `basalt.pii.revealed` event on the bus.
//!
//! Bounded (8192 entries): when the writer falls that far behind, further reveals are counted in
//! `dropped` and logged at warn, never block a read. Entries still queued at a crash are lost (at most
//! one batch, ~100 ms of reveals); the record data itself is never at risk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::mpsc;

pub const QUEUE: usize = 8192;

/// One record's values revealed to one caller (never the values themselves).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reveal {
    pub collection: String,
    pub record: String,
    pub fields: Vec<String>,
    /// `<auth collection>:<record id>`, or `guest`.
    pub actor: String,
    /// `GET /api/collections/users/records/…`, `realtime`, …
    pub route: String,
    pub ip: String,
    /// The `X-Pii-Reason` header, when given.
    pub reason: String,
}

pub struct Audit {
    tx: mpsc::Sender<Reveal>,
    rx: Mutex<Option<mpsc::Receiver<Reveal>>>,
    pub dropped: AtomicU64,
    pub written: AtomicU64,
}

impl Default for Audit {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Audit {
            tx,
            rx: Mutex::new(Some(rx)),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
        }
    }
}

impl Audit {
    pub fn push(&self, r: Reveal) {
        if self.tx.try_send(r).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "pii audit queue full: reveals not audited");
            }
        }
    }

    /// The receiving end, once (for the writer task).
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<Reveal>> {
        match self.rx.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }
}

/// Progress of this node's PII key rotation (`pii::rotate`).
#[derive(Default)]
pub struct Rotation {
    pub running: std::sync::atomic::AtomicBool,
    pub rewrapped: std::sync::atomic::AtomicU64,
    pub remaining: std::sync::atomic::AtomicU64,
    pub last_error: std::sync::Mutex<String>,
}
