//! Realtime subscriptions, the PocketBase protocol (§6 of pocketbase-api.md): an SSE stream per client
//! (`GET /api/realtime`), subscriptions set by `POST /api/realtime`, and a fan-out task that takes the
//! event bus's committed events in order and sends each subscriber what its rules, filter, expand and
//! fields allow. A WebSocket endpoint (`/api/realtime/ws`) carries the same topics and payloads.
//!
//! Rules are checked against the event's record snapshot (the record after the change, or before a
//! delete), not the live row, so a delete can be checked and every subscriber sees a consistent state.
//! A subscriber that cannot keep up (its queue of `QUEUE` frames is full) is disconnected; the SDK
//! reconnects and re-subscribes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use basalt_core::filter::compile::RequestInfo;
use basalt_core::record::Data;
use basalt_core::schema::Collection;
use basalt_core::{Error, FieldError, FieldErrors};
use basalt_events::Event;
use bytes::Bytes;
use serde_json::{json, Map, Value as Json};
use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::error::{ServiceError, ServiceResult};
use crate::records;
use crate::request::Req;
use crate::AppCtx;

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
struct Subscription {
    /// The exact string the client sent: the `event:` name of its frames.
    raw: Arc<str>,
    collection: String,
    record: Option<String>,
    query: Map<String, Json>,
    headers: Map<String, Json>,
    /// Events up to this sequence were committed (and possibly answered) before the subscription was
    /// made: it does not receive them, as in PocketBase.
    since: i64,
}

#[derive(Default)]
struct ClientState {
    /// The auth of the first subscription request (token hash) and the caller it resolved to.
    auth_key: Option<String>,
    caller: Option<Caller>,
    subs: Vec<Subscription>,
}

pub struct Client {
    pub id: String,
    tx: mpsc::Sender<Frame>,
    state: Mutex<ClientState>,
}

pub struct Hub {
    clients: RwLock<HashMap<String, Arc<Client>>>,
    pub config: RealtimeConfig,
    /// This node's id: client ids start with it, so a node that receives `POST /api/realtime` for
    /// a client held by another node knows where to forward it (see `cluster::forward_subscribe`).
    node: std::sync::OnceLock<String>,
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
    pub fn connect(self: &Arc<Self>) -> (Registration, mpsc::Receiver<Frame>) {
        // 40 characters as in the protocol: the node id, then random ones.
        let id = match self.node.get() {
            Some(n) if n.len() < 40 => format!("{n}{}", basalt_core::id::random_id(40 - n.len())),
            _ => basalt_core::id::random_id(40),
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let c = Arc::new(Client {
            id: id.clone(),
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
    pub async fn dispatch(&self, ctx: &AppCtx, ev: &Event) {
        let Some(coll) = ctx.collection(&ev.collection_id) else {
            return;
        };
        let Some(record) = ev.visible_record() else {
            return;
        };
        let clients: Vec<Arc<Client>> = self
            .clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        // Same auth + same subscription string ⇒ same payload: computed once per event.
        let mut memo: HashMap<(String, Arc<str>), Option<Bytes>> = HashMap::new();
        let mut slow: Vec<String> = Vec::new();
        for c in clients {
            let (caller, subs) = {
                let st = c.state.lock().unwrap_or_else(|p| p.into_inner());
                let subs: Vec<Subscription> = st
                    .subs
                    .iter()
                    .filter(|s| {
                        (s.collection == coll.name
                            || s.collection == coll.id
                            || s.collection.eq_ignore_ascii_case(&coll.name))
                            && s.record.as_deref().is_none_or(|r| r == ev.record_id)
                            && ev.seq > s.since
                    })
                    .cloned()
                    .collect();
                if subs.is_empty() {
                    continue;
                }
                (st.caller.clone(), subs)
            };
            let who = caller
                .as_ref()
                .map(|c| format!("{}/{}", c.collection.id, c.id()))
                .unwrap_or_default();
            for s in subs {
                let key = (who.clone(), s.raw.clone());
                let payload = match memo.get(&key) {
                    Some(p) => p.clone(),
                    None => {
                        let p = payload_for(ctx, &coll, ev, record, caller.as_ref(), &s)
                            .await
                            .unwrap_or_else(|e| {
                                tracing::debug!(error = ?e, "realtime: subscriber check failed");
                                None
                            });
                        memo.insert(key, p.clone());
                        p
                    }
                };
                let Some(data) = payload else { continue };
                let frame = Frame {
                    event: s.raw.clone(),
                    data,
                };
                if let Err(mpsc::error::TrySendError::Full(_)) = c.tx.try_send(frame) {
                    slow.push(c.id.clone());
                    break;
                }
            }
        }
        if !slow.is_empty() {
            let mut g = self.clients.write().unwrap_or_else(|p| p.into_inner());
            for id in slow {
                tracing::info!(client = %id, "realtime: client too slow, disconnected");
                g.remove(&id);
            }
        }
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

/// The JSON payload one subscriber receives, or `None` when its rule or filter excludes the record.
async fn payload_for(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    ev: &Event,
    record: &Map<String, Json>,
    caller: Option<&Caller>,
    s: &Subscription,
) -> ServiceResult<Option<Bytes>> {
    let info = RequestInfo {
        auth: caller.map(|c| (c.collection.clone(), c.record.clone())),
        body: Data::new(),
        query: s.query.clone(),
        headers: s.headers.clone(),
        method: "GET".into(),
        context: "realtime".into(),
        existing: None,
    };
    let rule = if s.record.is_some() {
        &coll.view_rule
    } else {
        &coll.list_rule
    };
    let cond = match records::rule_condition(ctx, coll, rule, &info) {
        Ok(c) => c,
        Err(_) => return Ok(None),
    };
    let filter = s.query.get("filter").and_then(Json::as_str).unwrap_or("");
    let filt = match records::client_filter(ctx, coll, filter, &info) {
        Ok(f) => f,
        Err(_) => return Ok(None),
    };
    let conds: Vec<_> = [cond, filt].into_iter().flatten().collect();
    if !conds.is_empty() && !records::snapshot_matches(ctx, coll, record, conds).await? {
        return Ok(None);
    }
    let data: Data = record.clone();
    let mut out = vec![records::output(ctx, coll, data.clone(), &info).await];
    let expand = s.query.get("expand").and_then(Json::as_str).unwrap_or("");
    if !expand.is_empty() {
        records::expand(ctx, coll, &mut out, &[data], expand, &info).await?;
    }
    let mut rec = Json::Object(out.pop().unwrap_or_default());
    if let Some(f) = s.query.get("fields").and_then(Json::as_str) {
        if !f.is_empty() {
            records::pick_fields(&mut rec, f);
        }
    }
    let body = json!({"action": ev.action.as_str(), "record": rec});
    Ok(Some(Bytes::from(body.to_string())))
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

/// The bus listener: the tail hands it each batch of committed events, in order.
pub struct Fanout(pub AppCtx);

#[async_trait::async_trait]
impl basalt_events::bus::Listener for Fanout {
    fn wants(&self) -> bool {
        !self.0.realtime.is_empty() || self.0.cache_follows_events()
    }
    async fn on_events(&self, events: &[Arc<Event>]) {
        // Other nodes' writes: drop their rows from this node's cache (this node's own writes were
        // dropped by the writer already; doing it again is harmless).
        if self.0.cache_follows_events() {
            for ev in events {
                self.0
                    .cache
                    .invalidate_local(&ev.collection_id, &ev.record_id);
            }
        }
        if self.0.realtime.is_empty() {
            return;
        }
        for ev in events {
            self.0.realtime.dispatch(&self.0, ev).await;
        }
    }
}

/// Replaces the subscriptions of realtime client `client` (`POST /api/realtime`, a WebSocket
/// subscription message, or any later transport): the caller's auth is pinned to the client.
pub fn subscribe(ctx: &AppCtx, req: &Req, client: &str, topics: Vec<String>) -> ServiceResult<()> {
    let key = req
        .auth
        .as_ref()
        .map(|c| format!("{}/{}", c.collection.id, c.id()));
    let since = ctx.events.get().map_or(0, |b| b.last_committed());
    ctx.realtime
        .set_subscriptions(client, topics, key, req.auth.clone(), since)
}
