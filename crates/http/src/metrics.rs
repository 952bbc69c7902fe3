//! `GET /metrics`: the Prometheus text exposition ([`basalt_service::metrics::render`]), and the
//! route label every answer carries for the request metrics of [`crate::conn`].
//!
//! Access ([`MetricsAccess`]): with a bearer token configured, a scrape must present it
//! (`Authorization: Bearer …`, compared in constant time), from anywhere; without one, only peers in
//! the allow-list may scrape (by default loopback on the main port). The peer is the socket's
//! address, never a forwarded header: a reverse proxy in front of the API must not make the metrics
//! public; for a reverse proxy on the same host (which connects from loopback), a request carrying a
//! forwarding header (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`) is refused without a token. A
//! separate listener (`--metrics-http`) serves only `/metrics` and allows any peer unless a token or
//! an allow-list is set: it is bound to an internal address, not published.

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use basalt_core::net::Net;

use basalt_core::Error;

use crate::error::ApiError;
use crate::AppCtx;

/// Who may read `/metrics`.
#[derive(Clone)]
pub struct MetricsAccess {
    /// A bearer token every scrape must present; `None`: the allow-list decides.
    pub token: Option<String>,
    /// Peers allowed without a token (when no token is set).
    pub allow: Vec<Net>,
    /// Refuses (without a token) requests that came through a proxy (`Forwarded`,
    /// `X-Forwarded-For`, `X-Real-IP`): a reverse proxy on the same host connects from loopback,
    /// and must not make the metrics public. On by default; the metrics listener turns it off.
    pub refuse_forwarded: bool,
}

impl std::fmt::Debug for MetricsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsAccess")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("allow", &self.allow)
            .finish()
    }
}

impl Default for MetricsAccess {
    /// The main port's default: loopback only, no token.
    fn default() -> Self {
        MetricsAccess {
            token: None,
            allow: ["127.0.0.0/8", "::1"]
                .iter()
                .filter_map(|n| Net::parse(n))
                .collect(),
            refuse_forwarded: true,
        }
    }
}

impl MetricsAccess {
    fn allows(
        &self,
        peer: std::net::IpAddr,
        authorization: Option<&str>,
        forwarded: bool,
    ) -> Result<(), StatusCode> {
        if let Some(t) = &self.token {
            let given = authorization
                .and_then(|h| h.strip_prefix("Bearer "))
                .unwrap_or("");
            return if subtle_eq(given.as_bytes(), t.as_bytes()) {
                Ok(())
            } else {
                Err(StatusCode::UNAUTHORIZED)
            };
        }
        if forwarded && self.refuse_forwarded {
            return Err(StatusCode::FORBIDDEN);
        }
        if self.allow.iter().any(|n| n.contains(peer)) {
            Ok(())
        } else {
            Err(StatusCode::FORBIDDEN)
        }
    }
}

/// Equal in constant time for equal lengths.
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `/metrics` route with its access policy.
pub fn routes(ctx: AppCtx, access: MetricsAccess) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(
                move |State(ctx): State<AppCtx>,
                      ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
                      req: Request| {
                    let access = access.clone();
                    async move {
                        let h = req.headers();
                        let forwarded = ["forwarded", "x-forwarded-for", "x-real-ip"]
                            .iter()
                            .any(|k| h.contains_key(*k));
                        let auth = req
                            .headers()
                            .get(header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok());
                        match access.allows(peer.ip(), auth, forwarded) {
                            Ok(()) => (
                                [(header::CONTENT_TYPE, basalt_service::metrics::CONTENT_TYPE)],
                                basalt_service::observe::render(&ctx).await,
                            )
                                .into_response(),
                            Err(StatusCode::UNAUTHORIZED) => ApiError::from(Error::Unauthorized(
                                "The metrics token is missing or invalid.".into(),
                            ))
                            .into_response(),
                            Err(_) => ApiError::from(Error::Forbidden(
                                "Metrics are not served to this address.".into(),
                            ))
                            .into_response(),
                        }
                    }
                },
            ),
        )
        .route_layer(route_layer())
        .with_state(ctx)
}

/// Where the router notes the matched route template (`http_route`) for the connection loop, which
/// put it in the request ([`route_layer`]).
#[derive(Clone, Default)]
pub struct RouteSlot(std::sync::Arc<std::sync::OnceLock<MatchedPath>>);

impl RouteSlot {
    pub fn get(&self) -> Option<&MatchedPath> {
        self.0.get()
    }
}

fn note_route(req: Request) -> Request {
    if let (Some(p), Some(slot)) = (
        req.extensions().get::<MatchedPath>(),
        req.extensions().get::<RouteSlot>(),
    ) {
        let _ = slot.0.set(p.clone());
    }
    req
}

/// The route layer every router's routes get: fills the request's [`RouteSlot`]. A plain request
/// mapping: no boxed future, nothing added to the answer.
pub fn route_layer() -> tower::util::MapRequestLayer<fn(Request) -> Request> {
    tower::util::MapRequestLayer::new(note_route as fn(Request) -> Request)
}
