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

use axum::body::Bytes;
use basalt_core::filter::compile::RequestInfo;
use basalt_core::record::Data;
use basalt_core::schema::Collection;
use basalt_core::{Error, FieldError, FieldErrors};
use basalt_events::Event;
use serde_json::{json, Map, Value as Json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::records;
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
    ) -> ApiResult<()> {
        let client = self
            .get(client_id)
            .ok_or_else(|| ApiError(Error::NotFound("Missing or invalid client id.".into())))?;
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
) -> ApiResult<Option<Bytes>> {
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
pub fn parse_body(body: &Json) -> ApiResult<(String, Vec<String>)> {
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
                        "validation_length_too_long",
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
                                "validation_length_too_long",
                                format!("The length must be no more than {MAX_TOPIC_LEN}."),
                            )
                            .with_params(json!({"max": MAX_TOPIC_LEN, "min": 0})),
                        );
                    }
                    None => {
                        errs.insert(
                            format!("subscriptions.{i}"),
                            FieldError::new("validation_invalid_type", "Must be a string."),
                        );
                    }
                }
            }
        }
        Some(_) => {
            errs.insert(
                "subscriptions".into(),
                FieldError::new("validation_invalid_type", "Must be a list of strings."),
            );
        }
    }
    if !errs.is_empty() {
        return Err(ApiError(Error::validation(
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

// ---- HTTP: the SSE stream and the subscription endpoint ----

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::Auth;

fn sse_frame(client: &str, event: &str, data: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(client.len() + event.len() + data.len() + 24);
    b.extend_from_slice(b"id:");
    b.extend_from_slice(client.as_bytes());
    b.extend_from_slice(b"\nevent:");
    b.extend_from_slice(event.as_bytes());
    b.extend_from_slice(b"\ndata:");
    b.extend_from_slice(data);
    b.extend_from_slice(b"\n\n");
    Bytes::from(b)
}

/// A connection's clock, shared by SSE and WebSocket: it ends `idle` after the last message or
/// `max_lifetime` after the start, and owes a keepalive `keepalive` after the last write (none when 0).
struct Lifetime {
    cfg: RealtimeConfig,
    started: Instant,
    last_message: Instant,
    last_write: Instant,
}

impl Lifetime {
    fn new(cfg: RealtimeConfig) -> Lifetime {
        let now = Instant::now();
        Lifetime {
            cfg,
            started: now,
            last_message: now,
            last_write: now,
        }
    }
    fn end(&self) -> Instant {
        (self.last_message + self.cfg.idle).min(self.started + self.cfg.max_lifetime)
    }
    fn ping(&self) -> Option<Instant> {
        (!self.cfg.keepalive.is_zero()).then(|| self.last_write + self.cfg.keepalive)
    }
    fn expired(&self) -> bool {
        Instant::now() >= self.end()
    }
    /// When to wake up if nothing arrives: the end, or the keepalive if that comes first.
    fn wake(&self) -> Instant {
        self.ping().map_or(self.end(), |p| p.min(self.end()))
    }
    fn ping_due(&self) -> bool {
        self.ping().is_some_and(|p| Instant::now() >= p)
    }
    fn sent_message(&mut self) {
        self.last_message = Instant::now();
        self.last_write = self.last_message;
    }
    fn sent_other(&mut self) {
        self.last_write = Instant::now();
    }
}

struct Stream {
    reg: Registration,
    rx: mpsc::Receiver<Frame>,
    connect: Option<Bytes>,
    clock: Lifetime,
}

impl Stream {
    /// The next chunk: a frame, a keepalive comment, or the end (idle, lifetime, shutdown).
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(c) = self.connect.take() {
            return Some(c);
        }
        while !self.clock.expired() {
            tokio::select! {
                f = self.rx.recv() => {
                    let f = f?;
                    self.clock.sent_message();
                    return Some(sse_frame(&self.reg.id, &f.event, &f.data));
                }
                _ = tokio::time::sleep_until(self.clock.wake()) => {
                    if self.clock.ping_due() {
                        self.clock.sent_other();
                        return Some(Bytes::from_static(b": keepalive\n\n"));
                    }
                }
            }
        }
        None
    }
}

/// `GET /api/realtime`: the event stream. The first frame is `PB_CONNECT` with the client id.
pub async fn sse(State(ctx): State<AppCtx>) -> Response {
    let (reg, rx) = ctx.realtime.connect();
    let hello = json!({"clientId": reg.id}).to_string();
    let st = Stream {
        connect: Some(sse_frame(&reg.id, "PB_CONNECT", hello.as_bytes())),
        reg,
        rx,
        clock: Lifetime::new(ctx.realtime.config.clone()),
    };
    let body = futures_util::stream::unfold(st, |mut st| async move {
        let chunk = st.next().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(chunk), st))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// `POST /api/realtime`: `{clientId, subscriptions}` replaces the client's subscriptions → 204.
pub async fn subscribe(
    State(ctx): State<AppCtx>,
    auth: Auth,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let raw = body.clone();
    // Malformed JSON gets the generic 400 here, as PocketBase answers on this endpoint.
    let body: Json = if body.iter().all(u8::is_ascii_whitespace) {
        Json::Object(Map::new())
    } else {
        serde_json::from_slice(&body)
            .map_err(|_| crate::error::bad("Something went wrong while processing your request."))?
    };
    let (client, topics) = parse_body(&body)?;
    if !ctx.realtime.has(&client) {
        // Behind a load balancer the stream may be held by another node.
        if let Some(r) = crate::cluster::forward_subscribe(&ctx, &client, &headers, raw).await {
            return Ok(r);
        }
    }
    let key = auth
        .0
        .as_ref()
        .map(|c| format!("{}/{}", c.collection.id, c.id()));
    let since = ctx.events.get().map_or(0, |b| b.last_committed());
    ctx.realtime
        .set_subscriptions(&client, topics, key, auth.0.clone(), since)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- WebSocket: the same hub, topics and payloads over one socket ----

/// `GET /api/realtime/ws`: a WebSocket carrying the realtime protocol.
///
/// - Server → client, text frames `{"event": <name>, "data": <payload>}`: first `PB_CONNECT` with
///   `{"clientId"}`, then one per delivered event, named by the exact subscription string as on SSE.
/// - Client → server, text frames `{"subscriptions": [...], "authorization": "<token>"}`: replaces the
///   subscriptions like `POST /api/realtime` (same limits, same auth pinning), answered with
///   `{"event":"PB_SUBSCRIPTIONS","data":{"subscriptions":[...]}}` or
///   `{"event":"PB_ERROR","data":{status, message, data}}`.
/// - The server pings after `keepalive` without traffic and closes on idle / maximum lifetime, as SSE.
pub async fn websocket(
    State(ctx): State<AppCtx>,
    meta: crate::auth::limits::ClientMeta,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    ws.max_message_size(1 << 20)
        .on_upgrade(move |socket| ws_session(ctx, socket, meta.ip))
}

async fn ws_session(ctx: AppCtx, mut socket: axum::extract::ws::WebSocket, ip: std::net::IpAddr) {
    use axum::extract::ws::Message;
    let (reg, mut rx) = ctx.realtime.connect();
    let cfg = ctx.realtime.config.clone();
    let hello = json!({"event": "PB_CONNECT", "data": {"clientId": reg.id}}).to_string();
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    let mut clock = Lifetime::new(cfg);
    while !clock.expired() {
        tokio::select! {
            f = rx.recv() => {
                let Some(f) = f else { break };
                let mut text = Vec::with_capacity(f.data.len() + f.event.len() + 24);
                text.extend_from_slice(b"{\"event\":");
                text.extend_from_slice(Json::String(f.event.to_string()).to_string().as_bytes());
                text.extend_from_slice(b",\"data\":");
                text.extend_from_slice(&f.data);
                text.push(b'}');
                let text = String::from_utf8(text).unwrap_or_default();
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
                clock.sent_message();
            }
            m = socket.recv() => {
                let Some(Ok(m)) = m else { break };
                match m {
                    Message::Text(t) => {
                        let reply = ws_subscribe(&ctx, &reg.id, t.as_str(), ip).await;
                        if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                            break;
                        }
                        clock.sent_other();
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(clock.wake()) => {
                if clock.ping_due() {
                    if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                        break;
                    }
                    clock.sent_other();
                }
            }
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

async fn ws_subscribe(ctx: &AppCtx, client: &str, text: &str, ip: std::net::IpAddr) -> Json {
    let err = |e: ApiError| json!({"event": "PB_ERROR", "data": e.into_parts().1});
    let Ok(body) = serde_json::from_str::<Json>(text) else {
        return err(crate::error::bad(
            "Something went wrong while processing your request.",
        ));
    };
    let mut with_id = body.clone();
    if let Some(o) = with_id.as_object_mut() {
        o.insert("clientId".into(), Json::String(client.into()));
    }
    let (_, topics) = match parse_body(&with_id) {
        Ok(v) => v,
        Err(e) => return err(e),
    };
    let caller = match body.get("authorization").and_then(Json::as_str) {
        Some(t) if !t.is_empty() => crate::auth::resolve_token(ctx, t).await,
        _ => None,
    };
    // The superuser IP allow-list holds here as on every HTTP request.
    if caller.as_ref().is_some_and(Caller::is_superuser) && !ctx.policy().superuser_ip_allowed(ip) {
        return err(crate::auth::superuser_ip_denied());
    }
    let key = caller
        .as_ref()
        .map(|c| format!("{}/{}", c.collection.id, c.id()));
    let subs = topics.clone();
    let since = ctx.events.get().map_or(0, |b| b.last_committed());
    match ctx
        .realtime
        .set_subscriptions(client, topics, key, caller, since)
    {
        Ok(()) => json!({"event": "PB_SUBSCRIPTIONS", "data": {"subscriptions": subs}}),
        Err(e) => err(e),
    }
}
