//! Axum handlers: parse the request, call the record/collection services, shape the response.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json as AxJson, Router};
use basalt_core::filter::compile::{Compiler, RequestInfo, MAIN};
use basalt_core::record::Data;
use basalt_core::schema::{Collection, CollectionType};
use basalt_core::sql::Value;
use basalt_core::{filter, Error};
use serde_json::{json, Map, Value as Json};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

use crate::auth::Auth;
use crate::auth::{flows, mfa, oauth2};
use crate::collections;
use crate::error::{bad, error_body, not_found, ApiError, ApiResult, JsonBody};
use crate::records::{self, ListParams};
use crate::settings;
use crate::AppCtx;

pub const BODY_LIMIT: usize = 32 << 20;

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
    Router::new()
        .route("/api/health", get(health).head(health))
        .route("/livez", get(crate::cluster::livez))
        .route("/readyz", get(crate::cluster::readyz))
        .route("/api/settings", get(get_settings).patch(patch_settings))
        .route(
            "/api/collections",
            get(list_collections).post(create_collection),
        )
        .route(
            "/api/collections/import",
            axum::routing::put(import_collections),
        )
        .route("/api/collections/meta/scaffolds", get(scaffolds))
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
            "/api/collections/{c}/records",
            get(list_records).post(create_record),
        )
        .route(
            "/api/collections/{c}/records/{id}",
            get(view_record).patch(update_record).delete(delete_record),
        )
        .route(
            "/api/collections/{c}/auth-with-password",
            post(flows::auth_with_password),
        )
        .route(
            "/api/collections/{c}/auth-refresh",
            post(flows::auth_refresh),
        )
        .route(
            "/api/collections/{c}/auth-methods",
            get(flows::auth_methods),
        )
        .route(
            "/api/collections/{c}/auth-with-oauth2",
            post(oauth2::auth_with_oauth2),
        )
        .route("/api/collections/{c}/request-otp", post(mfa::request_otp))
        .route(
            "/api/collections/{c}/auth-with-otp",
            post(mfa::auth_with_otp),
        )
        .route(
            "/api/collections/{c}/auth-with-totp",
            post(mfa::auth_with_totp),
        )
        .route("/api/collections/{c}/totp/enroll", post(mfa::totp_enroll))
        .route("/api/collections/{c}/totp/confirm", post(mfa::totp_confirm))
        .route("/api/collections/{c}/totp/disable", post(mfa::totp_disable))
        .route(
            "/api/collections/{c}/request-verification",
            post(flows::request_verification),
        )
        .route(
            "/api/collections/{c}/confirm-verification",
            post(flows::confirm_verification),
        )
        .route(
            "/api/collections/{c}/request-password-reset",
            post(flows::request_password_reset),
        )
        .route(
            "/api/collections/{c}/confirm-password-reset",
            post(flows::confirm_password_reset),
        )
        .route(
            "/api/collections/{c}/request-email-change",
            post(flows::request_email_change),
        )
        .route(
            "/api/collections/{c}/confirm-email-change",
            post(flows::confirm_email_change),
        )
        .route(
            "/api/collections/{c}/impersonate/{id}",
            post(flows::impersonate),
        )
        .route(
            "/api/collections/meta/oauth2-providers",
            get(oauth2_providers),
        )
        .route(
            "/api/oauth2-redirect",
            get(oauth2::redirect).post(oauth2::redirect),
        )
        .route("/api/settings/test/email", post(flows::test_email))
        .route("/_/", get(oauth2::landing))
        .route(
            "/api/settings/apple/generate-client-secret",
            post(oauth2::generate_apple_secret),
        )
        .route(
            "/api/realtime",
            get(crate::realtime::sse).post(crate::realtime::subscribe),
        )
        .route("/api/realtime/ws", get(crate::realtime::websocket))
        .route("/api/files/token", post(crate::files::serve::token))
        .route("/api/files/{c}/{id}/{name}", get(crate::files::serve::get))
        .route("/api/batch", post(crate::batch::batch))
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
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            crate::auth::limits::middleware,
        ))
        .layer(axum::middleware::from_fn(content_length_guard))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(cors)
        .with_state(ctx)
}

async fn oauth2_providers(auth: Auth) -> ApiResult<Response> {
    auth.require_superuser()?;
    Ok(axum::Json(oauth2::provider_list()).into_response())
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

async fn fallback() -> Response {
    error_body(StatusCode::NOT_FOUND, "File not found.", json!({}))
}

/// Query string as a map; repeated keys keep the last value.
pub fn query_map(raw: &Option<String>) -> Map<String, Json> {
    let mut m = Map::new();
    if let Some(q) = raw {
        for p in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |x: &str| {
                percent_encoding::percent_decode_str(&x.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            m.insert(dec(k), Json::String(dec(v)));
        }
    }
    m
}

fn qs<'a>(q: &'a Map<String, Json>, k: &str) -> &'a str {
    q.get(k).and_then(Json::as_str).unwrap_or("")
}

fn qbool(q: &Map<String, Json>, k: &str) -> bool {
    matches!(qs(q, k), "1" | "true" | "t" | "TRUE" | "True")
}

/// Serializes a successful body, applying `?fields=`.
pub fn respond(q: &Map<String, Json>, mut v: Json) -> Response {
    let f = qs(q, "fields");
    if !f.is_empty() {
        records::pick_fields(&mut v, f);
    }
    (StatusCode::OK, AxJson(v)).into_response()
}

/// `_totps` holds authenticator secrets: no records endpoint serves it, not even to superusers.
fn records_collection(ctx: &AppCtx, key: &str) -> Option<Arc<Collection>> {
    ctx.collection(key).filter(|c| c.name != "_totps")
}

fn collection_or_404(ctx: &AppCtx, key: &str) -> ApiResult<Arc<Collection>> {
    records_collection(ctx, key)
        .ok_or_else(|| ApiError(Error::NotFound("Missing collection context.".into())))
}

/// Writes answer an unknown collection with the protocol's other wording.
pub fn collection_for_write(ctx: &AppCtx, key: &str) -> ApiResult<Arc<Collection>> {
    records_collection(ctx, key).ok_or_else(|| {
        ApiError(Error::NotFound(
            "Missing or invalid collection context.".into(),
        ))
    })
}

// ---------- health & settings ----------

async fn health(State(ctx): State<AppCtx>, auth: Auth) -> Response {
    let mut data = Map::new();
    if auth.is_superuser() {
        data.insert(
            "canBackup".into(),
            Json::Bool(ctx.store.can_backup() && !ctx.backups.busy()),
        );
        if let Some(bus) = ctx.events.get() {
            let mut ev = bus.health();
            if let (Some(o), Some(w)) = (ev.as_object_mut(), ctx.webhooks.get()) {
                o.insert("webhooks".into(), w.health());
            }
            data.insert("events".into(), ev);
        }
        data.insert("realtime".into(), json!({"clients": ctx.realtime.len()}));
        data.insert("cluster".into(), crate::cluster::health(&ctx));
    }
    (
        StatusCode::OK,
        AxJson(json!({"code": 200, "data": data, "message": "API is healthy."})),
    )
        .into_response()
}

async fn get_settings(
    State(ctx): State<AppCtx>,
    auth: Auth,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    auth.require_superuser()?;
    Ok(respond(
        &query_map(&raw),
        settings::public_view(&ctx.settings()),
    ))
}

async fn patch_settings(
    State(ctx): State<AppCtx>,
    auth: Auth,
    RawQuery(raw): RawQuery,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    auth.require_superuser()?;
    let s = settings::patch(&ctx, &body).await?;
    Ok(respond(&query_map(&raw), s))
}

// ---------- collections ----------

fn page_params(q: &Map<String, Json>) -> ApiResult<(i64, i64)> {
    let num = |k: &str, default: i64| -> ApiResult<i64> {
        let v = qs(q, k);
        if v.is_empty() {
            return Ok(default);
        }
        v.parse::<i64>()
            .map_err(|_| bad("Something went wrong while processing your request."))
    };
    let page = num("page", 1)?;
    let page = if page < 1 { 1 } else { page };
    let per_page = num("perPage", 30)?;
    let per_page = if per_page < 1 { 30 } else { per_page.min(1000) };
    Ok((page, per_page))
}

async fn list_collections(
    State(ctx): State<AppCtx>,
    auth: Auth,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    auth.require_superuser()?;
    let q = query_map(&raw);
    let (page, per_page) = page_params(&q)?;
    let meta = collections::meta_collection();
    let info = RequestInfo {
        auth: auth
            .0
            .as_ref()
            .map(|c| (c.collection.clone(), c.record.clone())),
        ..Default::default()
    };
    let schema = ctx.collections();
    let mut comp = Compiler::new(ctx.dialect(), schema.as_ref(), &info, true);
    let mut s = ctx.sql();
    s.push("SELECT data FROM _collections AS ").push(MAIN);
    let mut cs = ctx.sql();
    cs.push("SELECT COUNT(*) FROM _collections AS ").push(MAIN);
    let f = qs(&q, "filter");
    if !f.trim().is_empty() {
        let e = filter::parse(f)
            .map_err(|e| crate::records::invalid_query("filter", &e.to_string()))?;
        let w = comp
            .compile(&meta, &e)
            .map_err(|e| crate::records::invalid_query("filter", &e.to_string()))?;
        s.push(" WHERE ").append(w.clone());
        cs.push(" WHERE ").append(w);
    }
    let sort = filter::parse_sort(qs(&q, "sort"))
        .map_err(|e| crate::records::invalid_query("sort", &e.to_string()))?;
    let order = comp
        .order_by(&meta, &sort)
        .map_err(|e| crate::records::invalid_query("sort", &e.to_string()))?;
    if !order.text.is_empty() {
        s.push(" ORDER BY ").append(order);
    } else {
        s.push(" ORDER BY created, name");
    }
    s.push(" LIMIT ")
        .bind(Value::Int(per_page))
        .push(" OFFSET ")
        .bind(Value::Int((page - 1).saturating_mul(per_page)));
    let rows = ctx.store.query(&s).await?;
    let mut items = vec![];
    for r in rows.rows {
        let text = r.into_iter().next().unwrap_or(Value::Null).into_string();
        let j: Json = serde_json::from_str(&text).map_err(Error::internal)?;
        items.push(Collection::from_storage_json(&j)?.to_json());
    }
    let total = if qbool(&q, "skipTotal") {
        -1
    } else {
        ctx.store.query(&cs).await?.scalar_int()
    };
    let total_pages = if total < 0 {
        -1
    } else {
        (total + per_page - 1) / per_page
    };
    let mut out = json!({"items": items, "page": page, "perPage": per_page, "totalItems": total, "totalPages": total_pages});
    let f = qs(&q, "fields");
    if !f.is_empty() {
        if let Some(items) = out.get_mut("items") {
            records::pick_fields(items, f);
        }
    }
    Ok((StatusCode::OK, AxJson(out)).into_response())
}

async fn create_collection(
    State(ctx): State<AppCtx>,
    auth: Auth,
    RawQuery(raw): RawQuery,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    auth.require_superuser()?;
    let c = collections::create(&ctx, &body).await?;
    Ok(respond(&query_map(&raw), c.to_json()))
}

async fn view_collection(
    State(ctx): State<AppCtx>,
    auth: Auth,
    Path(c): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    auth.require_superuser()?;
    let c = ctx.collection(&c).ok_or_else(not_found)?;
    Ok(respond(&query_map(&raw), c.to_json()))
}

async fn update_collection(
    State(ctx): State<AppCtx>,
    auth: Auth,
    Path(c): Path<String>,
    RawQuery(raw): RawQuery,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    auth.require_superuser()?;
    let old = ctx.collection(&c).ok_or_else(not_found)?;
    let c = collections::update(&ctx, &old, &body).await?;
    Ok(respond(&query_map(&raw), c.to_json()))
}

async fn delete_collection(
    State(ctx): State<AppCtx>,
    auth: Auth,
    Path(c): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_superuser()?;
    let c = ctx.collection(&c).ok_or_else(not_found)?;
    collections::delete(&ctx, &c).await?;
    drop_files(&ctx, &c).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn truncate_collection(
    State(ctx): State<AppCtx>,
    auth: Auth,
    Path(c): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_superuser()?;
    let c = ctx.collection(&c).ok_or_else(not_found)?;
    collections::truncate(&ctx, &c).await?;
    drop_files(&ctx, &c).await;
    Ok(StatusCode::NO_CONTENT)
}

/// After a collection was deleted or truncated (committed): its files folder goes.
async fn drop_files(ctx: &AppCtx, c: &Collection) {
    if !c.has_files() {
        return;
    }
    if let Err(e) = ctx.files.storage().delete_prefix(&c.id).await {
        tracing::warn!(error = %e, collection = %c.name, "could not delete the collection's files");
    }
}

async fn import_collections(
    State(ctx): State<AppCtx>,
    auth: Auth,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    auth.require_superuser()?;
    collections::import(&ctx, &body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn scaffolds(auth: Auth, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    auth.require_superuser()?;
    let mut base = Collection::scaffold(CollectionType::Base, "");
    base.list_rule = None;
    let auth_c = Collection::scaffold(CollectionType::Auth, "");
    let mut view = Collection::scaffold(CollectionType::Base, "").to_json();
    if let Some(o) = view.as_object_mut() {
        o.insert("type".into(), json!("view"));
        o.insert("viewQuery".into(), json!(""));
        o.insert("fields".into(), json!([]));
    }
    Ok(respond(
        &query_map(&raw),
        json!({"auth": auth_c.to_json(), "base": base.to_json(), "view": view}),
    ))
}

// ---------- records ----------

fn info_for(
    ctx: &AppCtx,
    auth: &Auth,
    method: &str,
    q: &Map<String, Json>,
    headers: &HeaderMap,
    body: Option<&Data>,
) -> RequestInfo {
    records::request_info(
        &ctx.collections(),
        &auth.0,
        method,
        q,
        headers,
        body,
        "default",
    )
}

pub async fn render(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    data: Vec<Data>,
    q: &Map<String, Json>,
    info: &RequestInfo,
) -> ApiResult<Vec<Map<String, Json>>> {
    let mut out = Vec::with_capacity(data.len());
    let e = qs(q, "expand");
    if e.is_empty() {
        for d in data {
            out.push(records::output(ctx, coll, d, info).await);
        }
        return Ok(out);
    }
    for d in &data {
        out.push(records::output(ctx, coll, d.clone(), info).await);
    }
    records::expand(ctx, coll, &mut out, &data, e, info).await?;
    Ok(out)
}

async fn list_records(
    State(ctx): State<AppCtx>,
    auth: Auth,
    Path(c): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let coll = collection_or_404(&ctx, &c)?;
    let q = query_map(&raw);
    let (page, per_page) = page_params(&q)?;
    let info = info_for(&ctx, &auth, "GET", &q, &headers, None);
    let p = ListParams {
        page,
        per_page,
        sort: qs(&q, "sort").into(),
        filter: qs(&q, "filter").into(),
        skip_total: qbool(&q, "skipTotal"),
    };
    let res = records::list(&ctx, &coll, &p, &info).await?;
    let (rows, page, per_page, total_items, total_pages) = (
        res.rows,
        res.page,
        res.per_page,
        res.total_items,
        res.total_pages,
    );
    let envelope = |items: &[u8]| {
        let mut b = Vec::with_capacity(items.len() + 96);
        b.extend_from_slice(b"{\"items\":[");
        b.extend_from_slice(items);
        b.extend_from_slice(
            format!(
                "],\"page\":{},\"perPage\":{},\"totalItems\":{},\"totalPages\":{}}}",
                page, per_page, total_items, total_pages
            )
            .as_bytes(),
        );
        b
    };
    if fast_path(&coll, &q, &info) {
        let mut items = Vec::with_capacity(rows.rows.len() * 160);
        records::write_rows_json(&coll, &rows, info.is_superuser(), &mut items);
        return Ok(json_bytes(envelope(&items)));
    }
    let data = records::rows_to_data(&coll, rows);
    let mut items = Json::Array(
        render(&ctx, &coll, data, &q, &info)
            .await?
            .into_iter()
            .map(Json::Object)
            .collect(),
    );
    let f = qs(&q, "fields");
    if !f.is_empty() {
        records::pick_fields(&mut items, f);
    }
    let items = serde_json::to_vec(&items).unwrap_or_default();
    Ok(json_bytes(envelope(
        &items[1..items.len().saturating_sub(1)],
    )))
}

/// No `expand`, no `fields`, and no per-record email decision: rows can be written as JSON directly.
fn fast_path(coll: &Collection, q: &Map<String, Json>, info: &RequestInfo) -> bool {
    qs(q, "expand").is_empty()
        && qs(q, "fields").is_empty()
        && (!coll.is_auth() || info.is_superuser())
}

fn json_bytes(body: Vec<u8>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn view_record(
    State(ctx): State<AppCtx>,
    auth: Auth,
    Path((c, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let coll = collection_or_404(&ctx, &c)?;
    let q = query_map(&raw);
    let info = info_for(&ctx, &auth, "GET", &q, &headers, None);
    let rows = records::fetch_rows_cached(&ctx, &coll, &id, &coll.view_rule, &info).await?;
    if rows.rows.is_empty() {
        return Err(not_found());
    }
    if fast_path(&coll, &q, &info) {
        let mut body = Vec::with_capacity(256);
        records::write_rows_json(&coll, &rows, info.is_superuser(), &mut body);
        return Ok(json_bytes(body));
    }
    let data = records::rows_to_data(&coll, Arc::unwrap_or_clone(rows));
    let out = render(&ctx, &coll, data, &q, &info).await?;
    Ok(respond(
        &q,
        Json::Object(out.into_iter().next().unwrap_or_default()),
    ))
}

/// One record as the response body (output rules, expand, fields).
async fn render_one(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    data: Data,
    q: &Map<String, Json>,
    info: &RequestInfo,
) -> ApiResult<Response> {
    let out = render(ctx, coll, vec![data], q, info).await?;
    Ok(respond(
        q,
        Json::Object(out.into_iter().next().unwrap_or_default()),
    ))
}

/// Record writes are refused on view collections.
fn writable(coll: &Collection) -> ApiResult<()> {
    if coll.kind == CollectionType::View {
        return Err(bad("Unsupported collection type."));
    }
    Ok(())
}

fn body_data(body: Json) -> Data {
    match body {
        Json::Object(m) => m,
        _ => Data::new(),
    }
}

async fn create_record(
    State(ctx): State<AppCtx>,
    auth: Auth,
    Path(c): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> ApiResult<Response> {
    let coll = match collection_for_write(&ctx, &c).and_then(|c| writable(&c).map(|_| c)) {
        Ok(c) => c,
        Err(e) => {
            crate::files::upload::drain(req).await;
            return Err(e);
        }
    };
    let body = match read_body(&ctx, &coll, req).await {
        Ok(b) => b,
        Err(resp) => return Ok(resp),
    };
    let q = query_map(&raw);
    let uploads = body.uploads;
    let body = body_data(body.json);
    let info = info_for(&ctx, &auth, "POST", &q, &headers, Some(&body));
    let mut w = records::WriteOut::default();
    let r = records::create_in(&ctx, &coll, &body, uploads, &info, None, &mut w).await;
    let data = w.finish(&ctx, r).await?;
    render_one(&ctx, &coll, data, &q, &info).await
}

/// A record write's body; file parts are streamed to temporary files, up to the collection's largest
/// file size.
async fn read_body(
    ctx: &AppCtx,
    coll: &Collection,
    req: axum::extract::Request,
) -> Result<crate::files::upload::Body, Response> {
    let max = crate::files::upload::ceiling([coll]);
    crate::files::upload::read(ctx, req, max, u64::MAX).await
}

async fn update_record(
    State(ctx): State<AppCtx>,
    auth: Auth,
    Path((c, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> ApiResult<Response> {
    let coll = match collection_for_write(&ctx, &c).and_then(|c| writable(&c).map(|_| c)) {
        Ok(c) => c,
        Err(e) => {
            crate::files::upload::drain(req).await;
            return Err(e);
        }
    };
    let body = match read_body(&ctx, &coll, req).await {
        Ok(b) => b,
        Err(resp) => return Ok(resp),
    };
    let q = query_map(&raw);
    let uploads = body.uploads;
    let body = body_data(body.json);
    let info = info_for(&ctx, &auth, "PATCH", &q, &headers, Some(&body));
    let mut w = records::WriteOut::default();
    let r = records::update_in(&ctx, &coll, &id, &body, uploads, &info, None, &mut w).await;
    let data = w.finish(&ctx, r).await?;
    render_one(&ctx, &coll, data, &q, &info).await
}

async fn delete_record(
    State(ctx): State<AppCtx>,
    auth: Auth,
    Path((c, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let coll = collection_or_404(&ctx, &c)?;
    writable(&coll)?;
    let q = query_map(&raw);
    let info = info_for(&ctx, &auth, "DELETE", &q, &headers, None);
    records::delete(&ctx, &coll, &id, &info).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[allow(dead_code)]
fn _unused(_: HashMap<String, String>) {}
