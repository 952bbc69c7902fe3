//! Rate limits of routes without a typed action (settings, collections, files, batch, realtime, …):
//! only the path labels of `rateLimits` (`/api/`, `POST /api/batch`) can match them. Routes with an
//! action (records, sign-ins) are limited by the service itself.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use basalt_service::auth::admit;
use basalt_service::Req;

use crate::error::ApiError;
use crate::extract::ip_of;
use crate::AppCtx;

/// Middleware: the most specific path-label rule for this request, per client IP.
pub async fn path_limits(State(ctx): State<AppCtx>, req: Request, next: Next) -> Response {
    // The hot path (limits off) costs one atomic load.
    if !ctx.rate_limits_on() {
        return next.run(req).await;
    }
    let ip = ip_of(&ctx, req.headers(), req.extensions());
    // Superusers are never limited; `@auth`/`@guest` rules need to know who asks. A bad token is
    // a guest here; the handler answers it.
    let auth = match req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(h) => basalt_service::auth::resolve_token(&ctx, h).await,
        None => None,
    };
    let who = Req {
        ip,
        auth,
        method: req.method().as_str().to_string(),
        path: req.uri().path().to_string(),
        ..Default::default()
    };
    if let Err(e) = admit(&ctx, &who, None, None).await {
        return ApiError::from(e).into_response();
    }
    next.run(req).await
}
