//! The realtime hub: connected clients (a bounded frame queue each), their subscriptions and the auth
//! pinned to them. A component of the application state: it never reads the state; the fan-out that
//! decides what each subscriber gets is the `realtime` module.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use basalt_core::{Error, FieldError, FieldErrors};
use bytes::Bytes;
use serde_json::{json, Map, Value as Json};
use tokio::sync::mpsc;

use crate::caller::Caller;
use crate::error::{ServiceError, ServiceResult};

/// Frames buffered per client before it counts as too slow.
pub const QUEUE: usize = 512;
pub const MAX_SUBSCRIPTIONS: usize = 1000;
pub const MAX_TOPIC_LEN: usize = 2500;

#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    /// Close a stream after this long without a message (PocketBase: 5 min).
    pub idle: Duration,
    /// Close a stream after this long in all (PocketBase: 30 min); the SDK reconnects.
    pub max_lifetime: Duration,
    /// Send an SSE comment after this long without a write, so proxies keep idle streams open.
    pub keepalive: Duration,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            idle: Duration::from_secs(300),
            max_lifetime: Duration::from_secs(1800),
            keepalive: Duration::from_secs(25),
        }
    }
}

/// What a client receives: a preformatted SSE frame, or the parts for a WebSocket message.
#[derive(Clone)]
pub struct Frame {
    pub event: Arc<str>,
    pub data: Bytes,
}

#[derive(Clone)]
pub struct Subscription {
    /// The exact string the client sent: the `event:` name of its frames.
    pub raw: Arc<str>,
    pub collection: String,
    pub record: Option<String>,
    pub query: Map<String, Json>,
    pub headers: Map<String, Json>,
    /// Events up to this sequence were committed (and possibly answered) before the subscription was
    /// made: it does not receive them, as in PocketBase.
    pub since: i64,
}

#[derive(Default)]
struct ClientState {
    /// The auth of the first subscription request (token hash) and the caller it resolved to.
    auth_key: Option<String>,
    caller: Option<Caller>,
    subs: Vec<Subscription>,
}

/// How a realtime client is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Sse,
    WebSocket,
}

/// Counts read at scrape time ([`Hub::stats`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct HubStats {
    pub sse: usize,
    pub websocket: usize,
    pub subscriptions: usize,
    /// Clients disconnected because they could not keep up, since start.
    pub dropped: u64,
}

pub struct Client {
    pub id: String,
    pub transport: Transport,
    tx: mpsc::Sender<Frame>,
    state: Mutex<ClientState>,
}

pub struct Hub {
    clients: RwLock<HashMap<String, Arc<Client>>>,
    pub config: RealtimeConfig,
    /// This node's id: client ids start with it, so a node that receives `POST /api/realtime` for
    /// a client held by another node knows where to forward it (see `cluster::forward_subscribe`).
    node: std::sync::OnceLock<String>,
    dropped: std::sync::atomic::AtomicU64,
}

/// Removes the client from the hub when its stream ends (disconnect, timeout, shutdown).
pub struct Registration {
    hub: Arc<Hub>,
    pub id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub
            .clients
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Hub {
    pub fn new(config: RealtimeConfig) -> Arc<Hub> {
        Arc::new(Hub {
            clients: RwLock::new(HashMap::new()),
            config,
            node: std::sync::OnceLock::new(),
            dropped: Default::default(),
        })
    }

    /// Sets the node id client ids start with (once, when the node joins the cluster).
    pub fn set_node(&self, id: &str) {
        let _ = self.node.set(id.to_string());
    }

    /// Whether this node holds the client.
    pub fn has(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Registers a new client; frames arrive on the receiver until the registration is dropped.
    pub fn connect(
        self: &Arc<Self>,
        transport: Transport,
    ) -> (Registration, mpsc::Receiver<Frame>) {
        // 40 characters as in the protocol: the node id, then random ones.
        let id = match self.node.get() {
            Some(n) if n.len() < 40 => format!("{n}{}", basalt_core::id::random_id(40 - n.len())),
            _ => basalt_core::id::random_id(40),
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let c = Arc::new(Client {
            id: id.clone(),
            transport,
            tx,
            state: Mutex::new(ClientState::default()),
        });
        self.clients
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), c);
        (
            Registration {
                hub: self.clone(),
                id,
            },
            rx,
        )
    }

    pub fn len(&self) -> usize {
        self.clients.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Connections by transport, subscriptions, and slow clients dropped.
    pub fn stats(&self) -> HubStats {
        let clients: Vec<Arc<Client>> = self
            .clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut st = HubStats {
            dropped: self.dropped.load(std::sync::atomic::Ordering::Relaxed),
            ..Default::default()
        };
        for c in clients {
            match c.transport {
                Transport::Sse => st.sse += 1,
                Transport::WebSocket => st.websocket += 1,
            }
            st.subscriptions += c.state.lock().unwrap_or_else(|p| p.into_inner()).subs.len();
        }
        st
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends every stream (shutdown): their senders drop, so each stream finishes and the SDK reconnects.
    pub fn close_all(&self) {
        self.clients
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn get(&self, id: &str) -> Option<Arc<Client>> {
        self.clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// The popup OAuth2 flow: sends `{state, code, error?}` as the `@oauth2` event to the client whose
    /// id is the state, if it subscribed to `@oauth2`. False when there is no such client.
    pub fn send_oauth2(&self, client_id: &str, data: Bytes) -> bool {
        let Some(c) = self.get(client_id) else {
            return false;
        };
        let subscribed = c
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .subs
            .iter()
            .any(|s| &*s.raw == "@oauth2");
        subscribed
            && c.tx
                .try_send(Frame {
                    event: Arc::from("@oauth2"),
                    data,
                })
                .is_ok()
    }

    /// `POST /api/realtime`: replaces the client's subscriptions and records its auth.
    pub fn set_subscriptions(
        &self,
        client_id: &str,
        topics: Vec<String>,
        auth_key: Option<String>,
        caller: Option<Caller>,
        since: i64,
    ) -> ServiceResult<()> {
        let client = self
            .get(client_id)
            .ok_or_else(|| ServiceError(Error::NotFound("Missing or invalid client id.".into())))?;
        let mut st = client.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.auth_key.is_some() && st.auth_key != auth_key {
            return Err(crate::error::forbidden(
                "The current and the previous request authorization don't match.",
            ));
        }
        let mut subs = Vec::with_capacity(topics.len());
        for t in topics {
            // A topic kept from the previous list keeps its start; a new one starts now.
            let kept = st.subs.iter().find(|s| *s.raw == *t).map(|s| s.since);
            if let Some(mut s) = parse_topic(&t) {
                s.since = kept.unwrap_or(since);
                subs.push(s);
            }
        }
        st.auth_key = auth_key;
        st.caller = caller;
        st.subs = subs;
        Ok(())
    }

    /// Sends the event to every subscriber allowed to see it.
    /// The clients with subscriptions that may receive an event of collection `coll` (name or id)
    /// about record `record_id` committed at `seq`: each with its pinned caller and those
    /// subscriptions.
    pub fn interested(
        &self,
        coll: &basalt_core::schema::Collection,
        record_id: &str,
        seq: i64,
    ) -> Vec<(Arc<Client>, Option<Caller>, Vec<Subscription>)> {
        let clients: Vec<Arc<Client>> = self
            .clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut out = Vec::new();
        for c in clients {
            let st = c.state.lock().unwrap_or_else(|p| p.into_inner());
            let subs: Vec<Subscription> = st
                .subs
                .iter()
                .filter(|s| {
                    (s.collection == coll.name
                        || s.collection == coll.id
                        || s.collection.eq_ignore_ascii_case(&coll.name))
                        && s.record.as_deref().is_none_or(|r| r == record_id)
                        && seq > s.since
                })
                .cloned()
                .collect();
            if subs.is_empty() {
                continue;
            }
            let caller = st.caller.clone();
            drop(st);
            out.push((c, caller, subs));
        }
        out
    }

    /// Disconnects clients that could not keep up (their queue was full).
    pub fn drop_slow(&self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let mut g = self.clients.write().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            tracing::info!(client = %id, "realtime: client too slow, disconnected");
            if g.remove(&id).is_some() {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

impl Client {
    /// Queues a frame; false when the queue is full (the client is too slow).
    pub fn offer(&self, frame: Frame) -> bool {
        !matches!(
            self.tx.try_send(frame),
            Err(mpsc::error::TrySendError::Full(_))
        )
    }
}

/// `coll/*`, `coll`, `coll/<id>`, each with an optional `?options=<urlencoded JSON>`.
fn parse_topic(raw: &str) -> Option<Subscription> {
    let (topic, opts) = match raw.split_once("?options=") {
        Some((t, o)) => (t, Some(o)),
        None => (raw, None),
    };
    let (collection, record) = match topic.split_once('/') {
        Some((c, "*")) => (c, None),
        Some((c, id)) => (c, Some(id.to_string())),
        None => (topic, None),
    };
    if collection.is_empty() {
        return None;
    }
    let mut query = Map::new();
    let mut headers = Map::new();
    if let Some(o) = opts {
        let decoded = percent_encoding::percent_decode_str(o).decode_utf8_lossy();
        if let Ok(Json::Object(mut m)) = serde_json::from_str::<Json>(&decoded) {
            if let Some(Json::Object(q)) = m.remove("query") {
                query = q
                    .into_iter()
                    .map(|(k, v)| match v {
                        Json::String(_) => (k, v),
                        other => (k, Json::String(other.to_string())),
                    })
                    .collect();
            }
            if let Some(Json::Object(h)) = m.remove("headers") {
                headers = h
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase().replace('-', "_"), v))
                    .collect();
            }
        }
    }
    Some(Subscription {
        raw: Arc::from(raw),
        collection: collection.to_string(),
        record,
        query,
        headers,
        since: 0,
    })
}

/// Validates `POST /api/realtime`'s body: `{clientId, subscriptions}`.
pub fn parse_body(body: &Json) -> ServiceResult<(String, Vec<String>)> {
    let mut errs = FieldErrors::new();
    let client_id = body
        .get("clientId")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string();
    if client_id.is_empty() {
        errs.insert("clientId".into(), FieldError::required());
    }
    let mut subs = Vec::new();
    match body.get("subscriptions") {
        None | Some(Json::Null) => {}
        Some(Json::Array(a)) => {
            if a.len() > MAX_SUBSCRIPTIONS {
                errs.insert(
                    "subscriptions".into(),
                    FieldError::new(
                        basalt_core::codes::LENGTH_TOO_LONG,
                        format!("The length must be no more than {MAX_SUBSCRIPTIONS}."),
                    )
                    .with_params(json!({"max": MAX_SUBSCRIPTIONS, "min": 0})),
                );
            }
            for (i, v) in a.iter().enumerate() {
                match v.as_str() {
                    Some(s) if s.chars().count() <= MAX_TOPIC_LEN => subs.push(s.to_string()),
                    Some(_) => {
                        errs.insert(
                            format!("subscriptions.{i}"),
                            FieldError::new(
                                basalt_core::codes::LENGTH_TOO_LONG,
                                format!("The length must be no more than {MAX_TOPIC_LEN}."),
                            )
                            .with_params(json!({"max": MAX_TOPIC_LEN, "min": 0})),
                        );
                    }
                    None => {
                        errs.insert(
                            format!("subscriptions.{i}"),
                            FieldError::new(basalt_core::codes::INVALID_TYPE, "Must be a string."),
                        );
                    }
                }
            }
        }
        Some(_) => {
            errs.insert(
                "subscriptions".into(),
                FieldError::new(
                    basalt_core::codes::INVALID_TYPE,
                    "Must be a list of strings.",
                ),
            );
        }
    }
    if !errs.is_empty() {
        return Err(ServiceError(Error::validation(
            "Something went wrong while processing your request.",
            errs,
        )));
    }
    Ok((client_id, subs))
}
