//! Connections: the accept loop (hyper's HTTP/1 server, with upgrades for WebSocket), and what it
//! does against slow and greedy clients.
//!
//! - **Header read and idle timeout** ([`HttpLimits::header_timeout`]): hyper closes a connection
//!   whose request head has not fully arrived in time; the timer starts when hyper waits for a head,
//!   so it also closes an idle keep-alive connection (Go's `ReadHeaderTimeout` + `IdleTimeout`).
//! - **Body rate** ([`SlowBody`]): a body must keep up an average rate after a grace period
//!   (Apache's `mod_reqtimeout` `body=…,MinRate=…`): the deadline starts at `body_grace` and moves
//!   one second later per `body_min_rate` bytes received. Past it the body fails and the request
//!   ends with 408.
//! - **Connections per client address** ([`HttpLimits::per_ip`]): past the cap a new connection is
//!   closed at once. Peers in [`HttpLimits::unlimited`] (by default loopback, where a local proxy
//!   or sidecar connects from) are not counted: behind a trusted proxy the peer is the proxy.
//! - **Buffered body memory** ([`BodyBudget`]): bytes a request keeps in memory (JSON bodies,
//!   multipart text parts and `@jsonPayload`; file parts stream to disk) are taken from one
//!   process-wide budget as they arrive; a request that finds it exhausted gets 503 at once.
//!
//! **Invariant:** every connection the listener accepts is served by [`serve_connections`], so no
//! request escapes these bounds.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use basalt_core::net::Net;
use basalt_service::AppCtx;
use bytes::Bytes;
use http_body::Frame;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;
use tracing::Instrument;

/// `[http]`: the connection bounds (see the module docs).
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub body_grace: Duration,
    /// Bytes per second a body must average after the grace period.
    pub body_min_rate: u64,
    /// Open connections per client address; 0: no cap.
    pub per_ip: usize,
    /// Peers not counted against `per_ip`.
    pub unlimited: Vec<Net>,
    /// Bytes all requests together may hold buffered in memory.
    pub body_memory: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(20),
            body_grace: Duration::from_secs(10),
            body_min_rate: 1024,
            per_ip: 128,
            unlimited: ["127.0.0.0/8", "::1"]
                .iter()
                .filter_map(|n| Net::parse(n))
                .collect(),
            body_memory: 256 << 20,
        }
    }
}

/// Counts open connections per client (see [`client_key`]).
#[derive(Default)]
struct PerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
}

struct Slot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

/// The key a peer is counted under: an IPv4 address, or an IPv6 address's /64 (one subscriber's usual
/// allocation: addresses within it are one client).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
        v4 => v4,
    }
}

impl PerIp {
    fn enter(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<Slot> {
        let ip = client_key(ip);
        let mut g = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = g.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Slot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = g.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                g.remove(&self.ip);
            }
        }
    }
}

/// Accepts connections until `stop` resolves, then lets the open ones finish their requests
/// (keep-alive connections close after their current response); returns when all have ended.
pub async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    ctx: AppCtx,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _ = BodyBudget::init(limits.body_memory);
    let limits = Arc::new(limits);
    let per_ip = Arc::new(PerIp::default());
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    let live = Arc::new(Live::default());
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let slot = if limits.per_ip == 0 || limits.unlimited.iter().any(|n| n.contains(peer.ip())) {
            None
        } else {
            match per_ip.enter(peer.ip(), limits.per_ip) {
                Some(s) => Some(s),
                None => {
                    tracing::debug!(peer = %peer, "connection refused: too many from this address");
                    drop(stream);
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let (app, limits, mut closing) = (app.clone(), limits.clone(), closing_rx.clone());
        let ctx = ctx.clone();
        let guard = live.enter();
        tokio::spawn(async move {
            let _slot = slot;
            let _live = guard;
            serve_one(stream, peer, app, ctx, &limits, &mut closing).await;
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    live.until_none().await;
    Ok(())
}

/// The connections being served, and a signal when the last one ends.
#[derive(Default)]
struct Live {
    n: std::sync::atomic::AtomicUsize,
    ended: tokio::sync::Notify,
}

struct LiveGuard(Arc<Live>);

impl Live {
    fn enter(self: &Arc<Self>) -> LiveGuard {
        self.n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        LiveGuard(self.clone())
    }

    async fn until_none(&self) {
        loop {
            let ended = self.ended.notified();
            let mut ended = std::pin::pin!(ended);
            ended.as_mut().enable();
            if self.n.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            ended.await;
        }
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0.n.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            self.0.ended.notify_waiters();
        }
    }
}

async fn serve_one(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    ctx: AppCtx,
    limits: &HttpLimits,
    closing: &mut tokio::sync::watch::Receiver<bool>,
) {
    let (grace, rate) = (limits.body_grace, limits.body_min_rate.max(1));
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let app = app.clone();
        let flight = ctx.metrics.http.start(req.method().as_str());
        let ctx = ctx.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let rid = request_id(&mut parts.headers);
            let route_slot = crate::metrics::RouteSlot::default();
            parts.extensions.insert(route_slot.clone());
            let log = ctx.logs.get().and_then(|l| {
                let s = ctx.config();
                (s.logs.max_days > 0).then(|| {
                    let slot = basalt_service::logs::AuthSlot::default();
                    parts.extensions.insert(slot.clone());
                    let e = pending_entry(&ctx, &parts, peer, s.logs.log_ip);
                    (l.clone(), slot, e, s)
                })
            });
            let request_bytes = parts
                .headers
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            // A request without a body (most GETs) has nothing to time.
            let body = if http_body::Body::is_end_stream(&body) {
                Body::new(body)
            } else {
                Body::new(SlowBody::new(body, grace, rate))
            };
            let span = request_span(&parts, &rid);
            let method = basalt_service::metrics::method_label(parts.method.as_str());
            let began = Instant::now();
            let call = app.oneshot(hyper::Request::from_parts(parts, body));
            let mut res = if span.is_none() {
                call.await?
            } else {
                call.instrument(span.clone()).await?
            };
            let status = res.status().as_u16();
            span.record("http.response.status_code", status);
            if status >= 500 {
                span.record("otel.status_code", "error");
            }
            if let Some(r) = route_slot.get() {
                span.record("http.route", r.as_str());
                if basalt_service::trace::enabled() {
                    // The OpenTelemetry span exists already (its ids are in the logs): renamed in place.
                    use opentelemetry::trace::TraceContextExt;
                    use tracing_opentelemetry::OpenTelemetrySpanExt;
                    span.context()
                        .span()
                        .update_name(format!("{method} {}", r.as_str()));
                }
            }
            span.in_scope(|| {
                tracing::debug!(
                    status,
                    micros = began.elapsed().as_micros() as u64,
                    "request served"
                )
            });
            security_headers(&mut res);
            res.headers_mut().insert(X_REQUEST_ID, rid);
            let route = route_slot.get().map_or("", |m| m.as_str());
            let response_bytes = http_body::Body::size_hint(res.body()).exact();
            if let Some((logs, slot, mut e, settings)) = log {
                e.status = res.status().as_u16();
                e.exec_ms = began.elapsed().as_secs_f64() * 1000.0;
                if let Some((coll, id)) = slot.get() {
                    e.auth = coll;
                    e.auth_id = id;
                }
                e.error = res
                    .extensions()
                    .get::<basalt_service::logs::LoggedError>()
                    .cloned();
                logs.push(&settings.logs, e);
            }
            flight.finish(route, res.status().as_u16(), request_bytes, response_bytes);
            Ok::<_, std::convert::Infallible>(res)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let conn = builder
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(peer = %peer, error = %e, "connection ended");
            }
            return;
        }
        _ = closing.wait_for(|c| *c) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// What a request log entry knows before the answer: method, URL, addresses, referer, agent.
fn pending_entry(
    ctx: &AppCtx,
    parts: &axum::http::request::Parts,
    peer: SocketAddr,
    log_ip: bool,
) -> basalt_service::logs::RequestEntry {
    // At most 300 characters of a header (a copy when it is shorter, as nearly all are).
    let h = |k: axum::http::HeaderName| {
        let v = parts
            .headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if v.len() <= 300 {
            return v.to_string();
        }
        match v.char_indices().nth(300) {
            Some((cut, _)) => v[..cut].to_string(),
            None => v.to_string(),
        }
    };
    basalt_service::logs::RequestEntry {
        method: {
            use axum::http::Method as M;
            match parts.method {
                M::GET => "GET".into(),
                M::POST => "POST".into(),
                M::PATCH => "PATCH".into(),
                M::DELETE => "DELETE".into(),
                M::PUT => "PUT".into(),
                M::OPTIONS => "OPTIONS".into(),
                M::HEAD => "HEAD".into(),
                ref other => other.as_str().to_string().into(),
            }
        },
        url: {
            let url = parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
            // Download tokens are never kept; a filter may compare a pii field with its value:
            // then the log keeps its shape only.
            if url.contains('?') && (url.contains("token=") || url.contains("filter=")) {
                basalt_service::logs::redact_url(&url, ctx.collections().has_pii)
            } else {
                url
            }
        },
        remote_ip: log_ip.then(|| peer.ip()),
        user_ip: log_ip.then(|| crate::extract::ip_of(ctx, &parts.headers, &parts.extensions)),
        referer: h(axum::http::header::REFERER),
        preflight: parts.method == axum::http::Method::OPTIONS
            && parts
                .headers
                .contains_key(axum::http::header::ACCESS_CONTROL_REQUEST_METHOD),
        user_agent: h(axum::http::header::USER_AGENT),
        ..Default::default()
    }
}

/// The request's span: its id, method and path, and (filled as they become known) route, status,
/// collection and caller kind. With tracing on, it is an OpenTelemetry server span continuing the
/// client's W3C `traceparent`, and its trace and span ids are fields (JSON logs carry them).
fn request_span(
    parts: &axum::http::request::Parts,
    rid: &axum::http::HeaderValue,
) -> tracing::Span {
    // A span costs its formatting on every request: made only when something reads it.
    if !basalt_service::trace::request_spans() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "request",
        otel.name = %parts.method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        request_id = rid.to_str().unwrap_or(""),
        method = %parts.method,
        path = parts.uri.path(),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        basalt.collection = tracing::field::Empty,
        basalt.caller = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    if basalt_service::trace::enabled() {
        use opentelemetry::propagation::TextMapPropagator;
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        if parts.headers.contains_key("traceparent") {
            let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new()
                .extract(&Headers(&parts.headers));
            let _ = span.set_parent(parent);
        }
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        if sc.is_valid() && (sc.is_sampled() || basalt_service::trace::json_logs()) {
            span.record("trace_id", sc.trace_id().to_string());
            span.record("span_id", sc.span_id().to_string());
        }
        // An unsampled span that no log line shows: nothing more is worth recording on it.
        if !sc.is_sampled() && !basalt_service::trace::json_logs() {
            return tracing::Span::none();
        }
    }
    span
}

/// Reads W3C trace context headers from a request.
struct Headers<'a>(&'a axum::http::HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

const X_REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// The request's id: the client's `X-Request-Id` when it is a sensible token (1 to 128 visible ASCII
/// characters), else a new random one, set on the request for handlers and echoed on the answer.
fn request_id(h: &mut axum::http::HeaderMap) -> axum::http::HeaderValue {
    if let Some(v) = h.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    // A process prefix (random at start) and a counter, in 20 hex characters: unique, cheap.
    static PREFIX: std::sync::LazyLock<u32> = std::sync::LazyLock::new(rand_u32);
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xffff_ffff_ffff;
    let mut buf = [0u8; 20];
    let hex = b"0123456789abcdef";
    let v = (u128::from(*PREFIX) << 48) | u128::from(n);
    for (i, c) in buf.iter_mut().rev().enumerate() {
        *c = hex[((v >> (4 * i)) & 0xf) as usize];
    }
    let v = axum::http::HeaderValue::from_bytes(&buf)
        .unwrap_or_else(|_| axum::http::HeaderValue::from_static("-"));
    h.insert(X_REQUEST_ID, v.clone());
    v
}

/// 32 random bits (the standard library's per-process hash keys come from the OS).
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u32
}

/// Headers every answer carries: no MIME sniffing (an uploaded file is served as its stored type,
/// never guessed into HTML), no referrer leaves the API, and JSON and HTML answers may not be
/// framed by another site (clickjacking). Files may be framed: apps embed their PDFs and images.
fn security_headers(res: &mut axum::response::Response) {
    use axum::http::header::{self, HeaderValue};
    let framed_doc = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.starts_with("text/html"));
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if framed_doc {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("frame-ancestors 'none'"),
            );
        }
    }
}

/// A request body that must keep up [`HttpLimits::body_min_rate`] after [`HttpLimits::body_grace`].
pub struct SlowBody<B> {
    inner: B,
    started: Instant,
    received: u64,
    grace: Duration,
    rate: u64,
    /// Made the first time the body has nothing ready (a body that arrives at once never needs it).
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> SlowBody<B> {
    fn new(inner: B, grace: Duration, rate: u64) -> Self {
        let started = Instant::now();
        SlowBody {
            inner,
            started,
            received: 0,
            grace,
            rate,
            timer: None,
        }
    }

    fn deadline(&self) -> Instant {
        self.started + self.grace + Duration::from_secs(self.received / self.rate)
    }
}

/// The error a too-slow body fails with; the body readers answer it with 408.
#[derive(Debug)]
pub struct TooSlow;

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body arrived too slowly")
    }
}

impl std::error::Error for TooSlow {}

impl<B> http_body::Body for SlowBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.received += d.len() as u64;
                    let at = this.deadline();
                    if let Some(t) = this.timer.as_mut() {
                        t.as_mut().reset(at);
                    }
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let at = this.deadline();
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(TooSlow)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body read failed because the client sent too slowly (see [`SlowBody`]).
pub fn is_too_slow(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.is::<TooSlow>() {
            return true;
        }
        cur = c.source();
    }
    false
}

/// The process-wide budget of buffered body bytes (KiB permits).
pub struct BodyBudget;

static BUDGET: OnceLock<Arc<tokio::sync::Semaphore>> = OnceLock::new();

/// Body bytes held in memory by one request, returned to the budget when dropped.
#[derive(Default)]
pub struct Held {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    kib: u32,
    bytes: usize,
}

impl BodyBudget {
    /// Sizes the budget (the first server of the process decides; later calls keep it).
    fn init(bytes: usize) -> &'static Arc<tokio::sync::Semaphore> {
        BUDGET.get_or_init(|| {
            Arc::new(tokio::sync::Semaphore::new(
                (bytes >> 10).clamp(1024, tokio::sync::Semaphore::MAX_PERMITS),
            ))
        })
    }

    fn get() -> &'static Arc<tokio::sync::Semaphore> {
        Self::init(HttpLimits::default().body_memory)
    }
}

impl Held {
    /// Accounts `n` more bytes; `false` when the budget is exhausted (answer 503).
    pub fn take(&mut self, n: usize) -> bool {
        self.bytes += n;
        let want = u32::try_from(self.bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        if want <= self.kib {
            return true;
        }
        match BodyBudget::get()
            .clone()
            .try_acquire_many_owned(want - self.kib)
        {
            Ok(p) => {
                self.kib = want;
                match &mut self.permit {
                    Some(h) => h.merge(p),
                    None => self.permit = Some(p),
                }
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_peers_count_per_64() {
        let a = client_key("2001:db8:1:2::1".parse().unwrap());
        let b = client_key("2001:db8:1:2:ffff::9".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, client_key("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(
            client_key("::ffff:10.0.0.1".parse().unwrap()),
            client_key("10.0.0.1".parse().unwrap())
        );
    }
}
