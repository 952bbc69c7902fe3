//! Axum handlers: decode the request into a [`Client`] and a body, call the service, encode the
//! answer. [`router`] wires every route with CORS, body limits, rate limits and panic catching.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json as AxJson, Router};
use basalt_service::{collections, crud, records, settings};
use serde_json::{json, Map, Value as Json};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

use crate::auth;
use crate::error::{error_body, not_found, ApiResult, JsonBody};
use crate::extract::Client;
use crate::AppCtx;

pub const BODY_LIMIT: usize = 32 << 20;

/// What a process without the `api` module serves (a `worker`): the probes only.
pub fn probes_router(ctx: AppCtx) -> Router {
    Router::new()
        .route("/livez", get(crate::cluster::livez))
        .route("/readyz", get(crate::cluster::readyz))
        .route_layer(crate::metrics::route_layer())
        .fallback(no_route)
        .with_state(ctx)
}

async fn no_route() -> Response {
    error_body(StatusCode::NOT_FOUND, "File not found.", json!({}))
}

pub fn router(ctx: AppCtx) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods(AllowMethods::list([
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::PATCH,
            Method::POST,
            Method::DELETE,
        ]))
        .allow_headers(AllowHeaders::any());
    // Routes whose service operation has a typed action (records, sign-ins, auth flows): the
    // service applies the rate limits itself, whatever the transport.
    let actions = Router::new()
        .route(
            "/api/collections/{c}/records",
            get(list_records).post(create_record),
        )
        .route(
            "/api/collections/{c}/records/{id}",
            get(view_record).patch(update_record).delete(delete_record),
        )
        .merge(auth::routes())
        // GraphQL's root fields call the same typed actions (the service limits each of them).
        .merge(crate::graphql::routes(ctx.clone()))
        .route_layer(crate::metrics::route_layer());
    // Everything else is limited by path labels only (`/api/`, `POST /api/batch`, …).
    let paths = Router::new()
        .route("/api/health", get(health).head(health))
        .route("/livez", get(crate::cluster::livez))
        .route("/readyz", get(crate::cluster::readyz))
        .route("/api/settings", get(get_settings).patch(patch_settings))
        .route("/api/logs", get(list_logs).delete(truncate_logs))
        .route("/api/logs/stats", get(logs_stats))
        .route("/api/logs/{id}", get(view_log))
        .route("/api/crons", get(list_crons))
        .route("/api/openapi.json", get(openapi))
        .route("/api/typegen/ts", get(typegen_ts))
        .route("/api/crons/{id}", post(run_cron))
        .route("/api/settings/test/s3", post(test_s3))
        .route(
            "/api/collections",
            get(list_collections).post(create_collection),
        )
        .route(
            "/api/collections/import",
            axum::routing::put(import_collections),
        )
        .route("/api/collections/meta/scaffolds", get(scaffolds))
        .route("/api/collections/meta/dry-run-view", post(dry_run_view))
        .route(
            "/api/collections/{c}",
            get(view_collection)
                .patch(update_collection)
                .delete(delete_collection),
        )
        .route(
            "/api/collections/{c}/truncate",
            axum::routing::delete(truncate_collection),
        )
        .route(
            "/api/collections/meta/oauth2-providers",
            get(oauth2_providers),
        )
        .merge(auth::path_routes())
        .merge(crate::dashboard::routes())
        .route(
            "/api/realtime",
            get(crate::realtime::sse).post(crate::realtime::subscribe),
        )
        .route("/api/realtime/ws", get(crate::realtime::websocket))
        .route("/api/files/token", post(crate::files::serve::token))
        .route("/api/files/{c}/{id}/{name}", get(crate::files::serve::get))
        .route("/api/batch", post(crate::batch::batch))
        .route("/api/pii/erase", post(crate::pii::erase))
        .route("/api/pii/export/{c}/{id}", get(crate::pii::export))
        .route(
            "/api/pii/rotate",
            post(crate::pii::rotate).get(crate::pii::status),
        )
        .route(
            "/api/backups",
            get(crate::backups::list).post(crate::backups::create),
        )
        .route("/api/backups/upload", post(crate::backups::upload))
        .route(
            "/api/backups/{key}",
            get(crate::backups::download).delete(crate::backups::delete),
        )
        .route("/api/backups/{key}/restore", post(crate::backups::restore))
        .route(
            "/api/webhooks",
            get(crate::webhooks::list).post(crate::webhooks::create),
        )
        .route("/api/webhooks/deliveries", get(crate::webhooks::deliveries))
        .route(
            "/api/webhooks/deliveries/{id}/replay",
            post(crate::webhooks::replay),
        )
        .route(
            "/api/webhooks/{id}",
            get(crate::webhooks::view)
                .patch(crate::webhooks::update)
                .delete(crate::webhooks::delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            crate::limits::path_limits,
        ))
        .route_layer(crate::metrics::route_layer());
    actions
        .merge(paths)
        .fallback(fallback)
        .layer(axum::middleware::from_fn(content_length_guard))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(cors)
        .with_state(ctx)
}

async fn oauth2_providers(Client(req): Client) -> ApiResult<Response> {
    req.require_superuser()?;
    Ok(axum::Json(basalt_service::auth::oauth2::provider_list()).into_response())
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    error_body(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong while processing your request.",
        json!({}),
    )
}

/// Refuses a body announced as larger than the limit before reading it (chunked bodies are limited by
/// `DefaultBodyLimit` as they are read).
async fn content_length_guard(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // Multipart bodies carry files: their parts are limited one by one as they stream in.
    let multipart = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let too_big = !multipart
        && req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > BODY_LIMIT as u64);
    if too_big {
        return error_body(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request entity too large.",
            json!({}),
        );
    }
    next.run(req).await
}

/// Paths no route answers: the public folder's files for GET/HEAD outside `/api/` and `/_/`
/// (see [`crate::public`]), else the protocol's 404.
async fn fallback(State(ctx): State<AppCtx>, req: axum::extract::Request) -> Response {
    let path = req.uri().path();
    let api = path.starts_with("/api/") || path == "/api" || path.starts_with("/_/");
    if !api && matches!(*req.method(), Method::GET | Method::HEAD) {
        if let Some(dir) = ctx.public_dir.as_ref().filter(|d| d.is_dir()) {
            return crate::public::serve(dir, ctx.index_fallback, req).await;
        }
    }
    no_route().await
}

/// A successful JSON answer.
pub fn ok_json(v: Json) -> Response {
    (StatusCode::OK, AxJson(v)).into_response()
}

fn json_bytes(body: Vec<u8>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

// ---------- health & settings ----------

async fn health(State(ctx): State<AppCtx>, Client(req): Client) -> Response {
    let mut data = Map::new();
    if req.is_superuser() {
        data = basalt_service::cluster::status(&ctx);
        if ctx.pii.is_some() {
            let pii = basalt_service::privacy::status(&ctx)
                .await
                .unwrap_or_else(|e| json!({"error": e.0.to_string()}));
            data.insert("pii".into(), pii);
        }
    }
    ok_json(json!({"code": 200, "data": data, "message": "API is healthy."}))
}

// ---------- request logs ----------

async fn list_logs(State(ctx): State<AppCtx>, Client(req): Client) -> ApiResult<Response> {
    let mut page = basalt_service::observe::api_list(&ctx, &req).await?;
    // `fields` picks from each item, as on record lists.
    if let Some(items) = page.get_mut("items") {
        *items = records::shape(&req.query, items.take());
    }
    Ok(ok_json(page))
}

async fn logs_stats(State(ctx): State<AppCtx>, Client(req): Client) -> ApiResult<Response> {
    let stats = basalt_service::observe::api_stats(&ctx, &req).await?;
    Ok(ok_json(records::shape(&req.query, stats)))
}

async fn view_log(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let entry = basalt_service::observe::api_view(&ctx, &req, &id).await?;
    Ok(ok_json(records::shape(&req.query, entry)))
}

async fn truncate_logs(State(ctx): State<AppCtx>, Client(req): Client) -> ApiResult<Response> {
    basalt_service::observe::api_truncate(&ctx, &req).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn openapi(State(ctx): State<AppCtx>, Client(req): Client) -> ApiResult<Response> {
    Ok(ok_json(basalt_service::apidoc::api_openapi(&ctx, &req)?))
}

async fn typegen_ts(State(ctx): State<AppCtx>, Client(req): Client) -> ApiResult<Response> {
    let ts = basalt_service::apidoc::api_typescript(&ctx, &req)?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/typescript; charset=utf-8",
        )],
        ts,
    )
        .into_response())
}

async fn list_crons(State(ctx): State<AppCtx>, Client(req): Client) -> ApiResult<Response> {
    Ok(ok_json(basalt_service::crons::api_list(&ctx, &req)?))
}

async fn run_cron(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    basalt_service::crons::api_run(&ctx, &req, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn test_s3(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    basalt_service::crons::test_s3(&ctx, &req, &body).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_settings(State(ctx): State<AppCtx>, Client(req): Client) -> ApiResult<Response> {
    req.require_superuser()?;
    Ok(ok_json(records::shape(
        &req.query,
        settings::public_view(&ctx.settings()),
    )))
}

async fn patch_settings(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    req.require_superuser()?;
    let s = settings::patch(&ctx, &body).await?;
    Ok(ok_json(records::shape(&req.query, s)))
}

// ---------- collections ----------

async fn list_collections(State(ctx): State<AppCtx>, Client(req): Client) -> ApiResult<Response> {
    Ok(ok_json(collections::list(&ctx, &req).await?))
}

async fn create_collection(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    req.require_superuser()?;
    let c = collections::create(&ctx, &body).await?;
    Ok(ok_json(records::shape(&req.query, c.to_json())))
}

async fn view_collection(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(c): Path<String>,
) -> ApiResult<Response> {
    req.require_superuser()?;
    let c = ctx.collection(&c).ok_or_else(not_found)?;
    Ok(ok_json(records::shape(&req.query, c.to_json())))
}

async fn update_collection(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(c): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    req.require_superuser()?;
    let old = ctx.collection(&c).ok_or_else(not_found)?;
    let c = collections::update(&ctx, &old, &body).await?;
    Ok(ok_json(records::shape(&req.query, c.to_json())))
}

async fn delete_collection(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(c): Path<String>,
) -> ApiResult<StatusCode> {
    req.require_superuser()?;
    let c = ctx.collection(&c).ok_or_else(not_found)?;
    collections::delete(&ctx, &c).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn truncate_collection(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(c): Path<String>,
) -> ApiResult<StatusCode> {
    req.require_superuser()?;
    let c = ctx.collection(&c).ok_or_else(not_found)?;
    collections::truncate(&ctx, &c).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn import_collections(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    req.require_superuser()?;
    collections::import(&ctx, &body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn dry_run_view(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    Ok(ok_json(
        basalt_service::views::dry_run(&ctx, &req, &body).await?,
    ))
}

async fn scaffolds(Client(req): Client) -> ApiResult<Response> {
    Ok(ok_json(collections::scaffolds(&req)?))
}

// ---------- records ----------

async fn list_records(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path(c): Path<String>,
) -> ApiResult<Response> {
    let page = crud::list(&ctx, &req, &c).await?;
    Ok(json_bytes(page.into_json_bytes()))
}

async fn view_record(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path((c, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let one = crud::view(&ctx, &req, &c, &id).await?;
    Ok(json_bytes(one.into_bytes()))
}

/// Admits a record write, then reads its body; file parts are streamed to temporary files, up to
/// the collection's largest file size. An unknown collection or a rate-limited caller is answered
/// before the body is read (it is drained).
async fn write_body(
    ctx: &AppCtx,
    client: &basalt_service::Req,
    c: &str,
    action: basalt_service::limits::Action,
    req: axum::extract::Request,
) -> Result<(crud::Admitted, crate::files::upload::Body), Response> {
    let w = match crud::admit_write(ctx, client, c, action).await {
        Ok(w) => w,
        Err(e) => {
            crate::files::upload::drain(req).await;
            return Err(crate::error::ApiError::from(e).into_response());
        }
    };
    let max = crate::files::upload::ceiling([&**w.collection()]);
    let body = crate::files::upload::read(&ctx.files.tmp_dir(), req, max, u64::MAX).await?;
    Ok((w, body))
}

async fn create_record(
    State(ctx): State<AppCtx>,
    Client(client): Client,
    Path(c): Path<String>,
    req: axum::extract::Request,
) -> ApiResult<Response> {
    let action = basalt_service::limits::Action::Create;
    let (w, body) = match write_body(&ctx, &client, &c, action, req).await {
        Ok(b) => b,
        Err(resp) => return Ok(resp),
    };
    let out = crud::create(&ctx, &client, w, body.json, body.uploads).await?;
    Ok(ok_json(out))
}

async fn update_record(
    State(ctx): State<AppCtx>,
    Client(client): Client,
    Path((c, id)): Path<(String, String)>,
    req: axum::extract::Request,
) -> ApiResult<Response> {
    let action = basalt_service::limits::Action::Update;
    let (w, body) = match write_body(&ctx, &client, &c, action, req).await {
        Ok(b) => b,
        Err(resp) => return Ok(resp),
    };
    let out = crud::update(&ctx, &client, w, &id, body.json, body.uploads).await?;
    Ok(ok_json(out))
}

async fn delete_record(
    State(ctx): State<AppCtx>,
    Client(req): Client,
    Path((c, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    crud::delete(&ctx, &req, &c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
