//! The one extractor every handler uses to describe its caller to the service: a [`Client`] holding
//! the transport-neutral [`Req`] (client IP after trusted proxies, auth from the `Authorization`
//! token, method, path, query, and the headers rules may read).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use basalt_service::limits::client_ip;
use basalt_service::request::parse_query;
use basalt_service::Req;
use serde_json::{Map, Value as Json};

use crate::error::ApiError;
use crate::AppCtx;

/// The caller of this request, as the service sees it.
pub struct Client(pub Req);

/// The socket peer's address (unspecified when the server was not started with connect info).
pub fn peer_of(ext: &axum::http::Extensions) -> IpAddr {
    ext.get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// The client IP of a request: the peer, or the trusted proxy header's entry.
pub fn ip_of(
    ctx: &AppCtx,
    headers: &axum::http::HeaderMap,
    ext: &axum::http::Extensions,
) -> IpAddr {
    client_ip(
        &ctx.policy(),
        |name| headers.get(name).and_then(|v| v.to_str().ok()),
        peer_of(ext),
    )
}

impl FromRequestParts<AppCtx> for Client {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, ctx: &AppCtx) -> Result<Self, Self::Rejection> {
        let ip = ip_of(ctx, &parts.headers, &parts.extensions);
        if ctx.pii_require_tls && !ip.is_loopback() && ctx.collections().has_pii {
            // TLS ends at a proxy in front: only a request a trusted proxy forwarded (the client IP
            // came from its header) and marked `X-Forwarded-Proto: https` arrived encrypted.
            let proxied = peer_of(&parts.extensions) != ip;
            let https = parts
                .headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|p| p.eq_ignore_ascii_case("https"));
            if !(proxied && https) {
                return Err(basalt_service::error::forbidden(
                    "This server holds PII and accepts requests from other hosts only over HTTPS (through a TLS-terminating proxy that sets X-Forwarded-Proto).",
                )
                .into());
            }
        }
        let authorization = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let auth = basalt_service::auth::authenticate(ctx, authorization, ip).await?;
        if let (Some(slot), Some(c)) = (
            parts.extensions.get::<basalt_service::logs::AuthSlot>(),
            &auth,
        ) {
            slot.set(c);
        }
        basalt_service::trace::record_caller(match &auth {
            None => "guest",
            Some(c) if c.is_superuser() => "superuser",
            Some(_) => "user",
        });
        let query = parse_query(parts.uri.query().unwrap_or(""));
        // Headers are copied only when some rule, or this request's filter, reads them.
        let wants_headers = ctx.collections().rules_read[0]
            || query
                .get("filter")
                .and_then(Json::as_str)
                .is_some_and(|f| f.contains("@request.headers"));
        let mut headers = Map::new();
        if wants_headers {
            for (k, v) in &parts.headers {
                if let Ok(s) = v.to_str() {
                    headers.insert(
                        k.as_str().to_ascii_lowercase().replace('-', "_"),
                        Json::String(s.to_string()),
                    );
                }
            }
        } else if let Some(r) = parts
            .headers
            .get("x-pii-reason")
            .and_then(|v| v.to_str().ok())
        {
            // The reason a superuser gives to see pii in clear (audited with the reveal).
            headers.insert(
                "x_pii_reason".into(),
                Json::String(r.chars().take(500).collect()),
            );
        }
        Ok(Client(Req {
            ip,
            user_agent: parts
                .headers
                .get(axum::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .chars()
                .take(300)
                .collect(),
            auth,
            method: parts.method.as_str().to_string(),
            path: parts.uri.path().to_string(),
            query,
            headers,
        }))
    }
}
