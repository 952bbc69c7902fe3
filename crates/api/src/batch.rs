//! `POST /api/batch`: record creates, updates, upserts and deletes in one transaction, with the outer
//! request's auth. Files ride along as multipart parts named `requests.<i>.<field>` (or
//! `requests[<i>].<field>`).
//!
//! **Invariant:** either every request's write commits or none does; files stored for the batch are
//! deleted again when it fails, and files it replaced are deleted only after the commit.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use basalt_core::record::Data;
use basalt_core::{Error, FieldError, FieldErrors};
use serde_json::{json, Map, Value as Json};

use crate::auth::Auth;
use crate::error::{bad, error_body, forbidden, ApiError, ApiResult};
use crate::files::upload::Upload;
use crate::handlers::query_map;
use crate::records::{self, WriteOut};
use crate::AppCtx;

struct Settings {
    enabled: bool,
    max_requests: usize,
    timeout: Duration,
    /// The largest body in bytes (`maxBodySize`; 0: 128 MiB).
    max_body: u64,
}

fn settings(ctx: &AppCtx) -> Settings {
    let s = ctx.settings();
    let b = s.get("batch").cloned().unwrap_or(Json::Null);
    let n = |k: &str, d: u64| b.get(k).and_then(Json::as_u64).unwrap_or(d);
    Settings {
        enabled: b.get("enabled").and_then(Json::as_bool).unwrap_or(false),
        max_requests: n("maxRequests", 50) as usize,
        timeout: Duration::from_secs(n("timeout", 3).max(1)),
        max_body: match n("maxBodySize", 0) {
            0 => 128 << 20,
            b => b,
        },
    }
}

/// One request of the batch, parsed.
enum Op {
    Create(String),
    Update(String, String),
    Upsert(String),
    Delete(String, String),
}

fn parse_op(method: &str, url: &str) -> Option<(Op, Map<String, Json>)> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let q = query_map(&Some(query.to_string()));
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let dec = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let op = match (method.to_ascii_uppercase().as_str(), parts.as_slice()) {
        ("POST", ["", "api", "collections", c, "records"]) => Op::Create(dec(c)),
        ("PUT", ["", "api", "collections", c, "records"]) => Op::Upsert(dec(c)),
        ("PATCH", ["", "api", "collections", c, "records", id]) => Op::Update(dec(c), dec(id)),
        ("DELETE", ["", "api", "collections", c, "records", id]) => Op::Delete(dec(c), dec(id)),
        _ => return None,
    };
    Some((op, q))
}

/// The index of a batch file part's request and its field: `requests.3.avatar` or
/// `requests[3].avatar`.
fn file_target(part: &str) -> Option<(usize, String)> {
    let rest = part.strip_prefix("requests")?;
    let (i, field) = if let Some(r) = rest.strip_prefix('.') {
        r.split_once('.')?
    } else {
        let r = rest.strip_prefix('[')?;
        let (i, f) = r.split_once(']')?;
        (i, f.strip_prefix('.')?)
    };
    Some((i.parse().ok()?, field.to_string()))
}

/// The batch form's validation: a list of at most `max` requests, each with an upper-case method and
/// a url.
fn check_requests(requests: &[Json], max: usize) -> ApiResult<()> {
    let mut f = FieldErrors::new();
    if requests.is_empty() {
        f.insert(
            "requests".into(),
            FieldError::new("validation_required", "Cannot be blank."),
        );
    } else if requests.len() > max {
        f.insert(
            "requests".into(),
            FieldError::new(
                "validation_length_too_long",
                format!("The length must be no more than {max}."),
            )
            .with_params(json!({"max": max, "min": 0})),
        );
    } else {
        for (i, r) in requests.iter().enumerate() {
            match r.get("method").and_then(Json::as_str).unwrap_or("") {
                "" => {
                    f.insert(
                        format!("requests.{i}.method"),
                        FieldError::new("validation_required", "Cannot be blank."),
                    );
                }
                "GET" | "POST" | "PUT" | "PATCH" | "DELETE" => {}
                _ => {
                    f.insert(
                        format!("requests.{i}.method"),
                        FieldError::new("validation_in_invalid", "Must be a valid value."),
                    );
                }
            }
            let url = r.get("url").and_then(Json::as_str).unwrap_or("");
            if url.is_empty() {
                f.insert(
                    format!("requests.{i}.url"),
                    FieldError::new("validation_required", "Cannot be blank."),
                );
            } else if url.chars().count() > 2000 {
                f.insert(
                    format!("requests.{i}.url"),
                    FieldError::new(
                        "validation_length_too_long",
                        "The length must be no more than 2000.",
                    )
                    .with_params(json!({"max": 2000, "min": 0})),
                );
            }
        }
    }
    if f.is_empty() {
        Ok(())
    } else {
        Err(ApiError(Error::validation(
            "Invalid batch request data.",
            f,
        )))
    }
}

/// A request that went through: its collection, the record written (none for deletes), its query
/// (`expand`, `fields`) and request info, for rendering after the commit.
type Done = (
    std::sync::Arc<basalt_core::schema::Collection>,
    Option<Data>,
    Map<String, Json>,
    basalt_core::filter::compile::RequestInfo,
);

/// `POST /api/batch`.
pub async fn batch(
    State(ctx): State<AppCtx>,
    auth: Auth,
    RawQuery(_raw): RawQuery,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> ApiResult<Response> {
    let cfg = settings(&ctx);
    if !cfg.enabled || cfg.max_requests == 0 {
        crate::files::upload::drain(req).await;
        return Err(forbidden("Batch requests are not allowed."));
    }
    let max_file = crate::files::upload::ceiling(ctx.collections().list.iter().map(|c| &**c));
    let body = match crate::files::upload::read(&ctx, req, max_file, cfg.max_body).await {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::BAD_REQUEST => {
            return Err(bad("Failed to read the submitted batch data."))
        }
        Err(r) => return Ok(r),
    };
    let requests = match body.json.get("requests") {
        Some(Json::Array(a)) => a.clone(),
        None | Some(Json::Null) => Vec::new(),
        Some(_) => return Err(bad("Failed to read the submitted batch data.")),
    };
    check_requests(&requests, cfg.max_requests)?;
    let mut files: Vec<Vec<Upload>> = (0..requests.len()).map(|_| Vec::new()).collect();
    for mut up in body.uploads {
        if let Some((i, field)) = file_target(&up.part) {
            if let Some(slot) = files.get_mut(i) {
                up.part = field;
                slot.push(up);
            }
        }
    }
    let run = run(&ctx, &auth, &headers, requests, files);
    match tokio::time::timeout(cfg.timeout, run).await {
        Ok(r) => r,
        // The transaction was dropped with the future: nothing of the batch is kept.
        Err(_) => Err(bad("Batch transaction failed.")),
    }
}

async fn run(
    ctx: &AppCtx,
    auth: &Auth,
    headers: &HeaderMap,
    requests: Vec<Json>,
    mut files: Vec<Vec<Upload>>,
) -> ApiResult<Response> {
    let mut w = WriteOut::default();
    let mut tx = ctx.store.begin().await?;
    let mut done: Vec<Done> = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let uploads = std::mem::take(&mut files[i]);
        let method = r.get("method").and_then(Json::as_str).unwrap_or("");
        let url = r.get("url").and_then(Json::as_str).unwrap_or("");
        let body: Data = match r.get("body") {
            Some(Json::Object(m)) => m.clone(),
            _ => Data::new(),
        };
        let step = async {
            let Some((op, q)) = parse_op(method, url) else {
                return Err(bad("Something went wrong while processing your request."));
            };
            let coll_key = match &op {
                Op::Create(c) | Op::Upsert(c) | Op::Update(c, _) | Op::Delete(c, _) => c.clone(),
            };
            let coll = crate::handlers::collection_for_write(ctx, &coll_key)
                .map_err(|_| ApiError(Error::NotFound("Missing collection context.".into())))?;
            if coll.kind == basalt_core::schema::CollectionType::View {
                return Err(crate::error::bad("Unsupported collection type."));
            }
            let m = match &op {
                Op::Create(_) => "POST",
                Op::Upsert(_) => "PUT",
                Op::Update(..) => "PATCH",
                Op::Delete(..) => "DELETE",
            };
            let info = records::request_info(
                &ctx.collections(),
                &auth.0,
                m,
                &q,
                headers,
                Some(&body),
                "default",
            );
            let out = match op {
                Op::Create(_) => Some(
                    records::create_in(ctx, &coll, &body, uploads, &info, Some(&mut tx), &mut w)
                        .await?,
                ),
                Op::Update(_, id) => Some(
                    records::update_in(
                        ctx,
                        &coll,
                        &id,
                        &body,
                        uploads,
                        &info,
                        Some(&mut tx),
                        &mut w,
                    )
                    .await?,
                ),
                Op::Upsert(_) => {
                    let id = body.get("id").and_then(Json::as_str).unwrap_or("");
                    let exists = !id.is_empty()
                        && !records::load_in_tx(ctx, &mut tx, &coll, &[id.to_string()])
                            .await?
                            .is_empty();
                    if exists {
                        let id = id.to_string();
                        Some(
                            records::update_in(
                                ctx,
                                &coll,
                                &id,
                                &body,
                                uploads,
                                &info,
                                Some(&mut tx),
                                &mut w,
                            )
                            .await?,
                        )
                    } else {
                        Some(
                            records::create_in(
                                ctx,
                                &coll,
                                &body,
                                uploads,
                                &info,
                                Some(&mut tx),
                                &mut w,
                            )
                            .await?,
                        )
                    }
                }
                Op::Delete(_, id) => {
                    records::delete_in(ctx, &coll, &id, &info, Some(&mut tx), &mut w).await?;
                    None
                }
            };
            Ok((coll, out, q, info))
        };
        match step.await {
            Ok(d) => done.push(d),
            Err(e) => {
                drop(tx);
                w.files.failed(&ctx.files).await;
                return Ok(batch_failed(i, e));
            }
        }
    }
    if let Err(e) = tx.commit().await {
        w.files.failed(&ctx.files).await;
        return Err(e.into());
    }
    ctx.committed(w.seq).await;
    w.files.committed(&ctx.files).await;
    let mut results = Vec::with_capacity(done.len());
    for (coll, data, q, info) in done {
        match data {
            Some(d) => {
                let out = crate::handlers::render(ctx, &coll, vec![d], &q, &info).await?;
                let mut v = Json::Object(out.into_iter().next().unwrap_or_default());
                // `fields` applies to each result as it would to the request made alone.
                if let Some(f) = q.get("fields").and_then(Json::as_str) {
                    records::pick_fields(&mut v, f);
                }
                results.push(json!({"status": 200, "body": v}));
            }
            None => results.push(json!({"status": 204, "body": null})),
        }
    }
    Ok(axum::Json(Json::Array(results)).into_response())
}

/// The batch's 400 naming the request that failed, with its error as it would have been answered.
fn batch_failed(i: usize, e: ApiError) -> Response {
    let inner = e.into_parts().1;
    let mut reqs = Map::new();
    reqs.insert(
        i.to_string(),
        json!({
            "code": "batch_request_failed",
            "message": "Batch request failed.",
            "response": inner,
        }),
    );
    error_body(
        StatusCode::BAD_REQUEST,
        "Batch transaction failed.",
        json!({ "requests": reqs }),
    )
}
