//! Realtime over HTTP: the SSE stream (`GET /api/realtime`), the subscription endpoint
//! (`POST /api/realtime`, forwarded to the node holding the stream when it is elsewhere) and the
//! WebSocket twin (`/api/realtime/ws`). The hub, topics, rules and payloads are
//! `basalt_service::realtime`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use basalt_service::realtime::{parse_body, Frame, RealtimeConfig, Registration};
use basalt_service::{Req, ServiceError};
use serde_json::{json, Map, Value as Json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::{ApiError, ApiResult};
use crate::extract::Client;
use crate::AppCtx;

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
    let (reg, rx) = ctx.realtime.connect(basalt_service::hub::Transport::Sse);
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
    Client(req): Client,
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
        if let Some(r) = forward_subscribe(&ctx, &client, &headers, raw).await {
            return Ok(r);
        }
    }
    basalt_service::realtime::subscribe(&ctx, &req, &client, topics)?;
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
    Client(req): Client,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    ws.max_message_size(1 << 20)
        .on_upgrade(move |socket| ws_session(ctx, socket, req))
}

async fn ws_session(ctx: AppCtx, mut socket: axum::extract::ws::WebSocket, req: Req) {
    use axum::extract::ws::Message;
    let (reg, mut rx) = ctx
        .realtime
        .connect(basalt_service::hub::Transport::WebSocket);
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
                        let reply = ws_subscribe(&ctx, &reg.id, t.as_str(), &req).await;
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

/// One subscription message on the socket; its `authorization` token is the caller's auth (checked
/// against `superuserIPs` as on every request).
async fn ws_subscribe(ctx: &AppCtx, client: &str, text: &str, conn: &Req) -> Json {
    let err =
        |e: ServiceError| json!({"event": "PB_ERROR", "data": ApiError::from(e).into_parts().1});
    let Ok(body) = serde_json::from_str::<Json>(text) else {
        return err(basalt_service::error::bad(
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
    let token = body
        .get("authorization")
        .and_then(Json::as_str)
        .filter(|t| !t.is_empty());
    let auth = match basalt_service::auth::authenticate(ctx, token, conn.ip).await {
        Ok(a) => a,
        Err(e) => return err(e),
    };
    let req = Req {
        auth,
        ..conn.clone()
    };
    let subs = topics.clone();
    match basalt_service::realtime::subscribe(ctx, &req, client, topics) {
        Ok(()) => json!({"event": "PB_SUBSCRIPTIONS", "data": {"subscriptions": subs}}),
        Err(e) => err(e),
    }
}

/// Marks a forwarded request, so it is never forwarded again.
const FORWARDED: &str = "x-basalt-forwarded";

/// `POST /api/realtime` for a client this node does not hold: when the client id names another live
/// node, the request goes there (with its Authorization header) and its answer comes back as is.
/// `None`: no such node; the caller answers as for an unknown client.
pub async fn forward_subscribe(
    ctx: &AppCtx,
    client: &str,
    headers: &axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Option<Response> {
    if headers.contains_key(FORWARDED) {
        return None;
    }
    let reg = ctx.registry.get()?;
    let node = reg
        .nodes()
        .into_iter()
        .find(|n| n.live && n.id != reg.id && client.starts_with(&n.id))?;
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let http = HTTP.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default()
    });
    let base = if node.address.contains("://") {
        node.address.clone()
    } else {
        format!("http://{}", node.address)
    };
    let mut req = http
        .post(format!("{base}/api/realtime"))
        .header(FORWARDED, "1")
        .header("content-type", "application/json")
        .body(body);
    if let Some(a) = headers.get(axum::http::header::AUTHORIZATION) {
        req = req.header("authorization", a.as_bytes());
    }
    match req.send().await {
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let bytes = r.bytes().await.unwrap_or_default();
            let empty = bytes.is_empty();
            let mut resp = (status, bytes).into_response();
            if !empty {
                resp.headers_mut().insert(
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/json"),
                );
            }
            Some(resp)
        }
        Err(e) => {
            tracing::warn!(node = %node.id, error = %e, "forwarding a realtime subscription failed");
            None
        }
    }
}
