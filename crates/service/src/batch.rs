//! `POST /api/batch`: record creates, updates, upserts and deletes in one transaction, with the outer
//! request's auth. Files ride along as multipart parts named `requests.<i>.<field>` (or
//! `requests[<i>].<field>`).
//!
//! **Invariant:** either every request's write commits or none does; files stored for the batch are
//! deleted again when it fails, and files it replaced are deleted only after the commit.

use std::time::Duration;

use basalt_core::record::Data;
use basalt_core::{Error, FieldError, FieldErrors};
use serde_json::{json, Map, Value as Json};

use crate::error::{bad, ServiceError, ServiceResult};
use crate::files::upload::Upload;
use crate::records::{self, WriteOut};
use crate::request::{parse_query, Req};
use crate::AppCtx;

/// The `batch` settings.
pub struct Settings {
    pub enabled: bool,
    pub max_requests: usize,
    pub timeout: Duration,
    /// The largest body in bytes (`maxBodySize`; 0: 128 MiB).
    pub max_body: u64,
}

pub fn settings(ctx: &AppCtx) -> Settings {
    let b = &ctx.config().batch;
    Settings {
        enabled: b.enabled,
        max_requests: b.max_requests as usize,
        timeout: Duration::from_secs(b.timeout.max(1)),
        max_body: match b.max_body_size {
            0 => 128 << 20,
            n => n,
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
    let q = parse_query(query);
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
fn check_requests(requests: &[Json], max: usize) -> ServiceResult<()> {
    let mut f = FieldErrors::new();
    if requests.is_empty() {
        f.insert(
            "requests".into(),
            FieldError::new(basalt_core::codes::REQUIRED, "Cannot be blank."),
        );
    } else if requests.len() > max {
        f.insert(
            "requests".into(),
            FieldError::new(
                basalt_core::codes::LENGTH_TOO_LONG,
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
                        FieldError::new(basalt_core::codes::REQUIRED, "Cannot be blank."),
                    );
                }
                "GET" | "POST" | "PUT" | "PATCH" | "DELETE" => {}
                _ => {
                    f.insert(
                        format!("requests.{i}.method"),
                        FieldError::new(basalt_core::codes::IN_INVALID, "Must be a valid value."),
                    );
                }
            }
            let url = r.get("url").and_then(Json::as_str).unwrap_or("");
            if url.is_empty() {
                f.insert(
                    format!("requests.{i}.url"),
                    FieldError::new(basalt_core::codes::REQUIRED, "Cannot be blank."),
                );
            } else if url.chars().count() > 2000 {
                f.insert(
                    format!("requests.{i}.url"),
                    FieldError::new(
                        basalt_core::codes::LENGTH_TOO_LONG,
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
        Err(ServiceError(Error::validation(
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

/// A batch that ran to its end: each request's `{status, body}`, or the index of the request that
/// failed (everything rolled back) with its error as it would have been answered alone.
pub type Outcome = Result<Vec<Json>, (usize, ServiceError)>;

/// Runs a batch body `{requests: [{method, url, body}]}` with its uploads (parts named
/// `requests.<i>.<field>`) in one transaction, as the caller `req`, within the batch timeout.
/// The transport checks `settings().enabled` and the body size before reading the body.
pub async fn execute(
    ctx: &AppCtx,
    req: &Req,
    body: Json,
    uploads: Vec<Upload>,
) -> ServiceResult<Outcome> {
    let cfg = settings(ctx);
    if !cfg.enabled || cfg.max_requests == 0 {
        return Err(crate::error::forbidden("Batch requests are not allowed."));
    }
    let requests = match body.get("requests") {
        Some(Json::Array(a)) => a.clone(),
        None | Some(Json::Null) => Vec::new(),
        Some(_) => return Err(bad("Failed to read the submitted batch data.")),
    };
    check_requests(&requests, cfg.max_requests)?;
    let mut files: Vec<Vec<Upload>> = (0..requests.len()).map(|_| Vec::new()).collect();
    for mut up in uploads {
        if let Some((i, field)) = file_target(&up.part) {
            if let Some(slot) = files.get_mut(i) {
                up.part = field;
                slot.push(up);
            }
        }
    }
    let run = run(ctx, req, requests, files);
    match tokio::time::timeout(cfg.timeout, run).await {
        Ok(r) => r,
        // The transaction was dropped with the future: nothing of the batch is kept.
        Err(_) => Err(bad("Batch transaction failed.")),
    }
}

async fn run(
    ctx: &AppCtx,
    req: &Req,
    requests: Vec<Json>,
    mut files: Vec<Vec<Upload>>,
) -> ServiceResult<Outcome> {
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
            // The batch answers an unknown collection with the protocol's other wording.
            let coll =
                crate::crud::collection_for_write(ctx, &coll_key).map_err(|e| match e.0 {
                    Error::NotFound(_) => {
                        ServiceError(Error::NotFound("Missing collection context.".into()))
                    }
                    _ => e,
                })?;
            let m = match &op {
                Op::Create(_) => "POST",
                Op::Upsert(_) => "PUT",
                Op::Update(..) => "PATCH",
                Op::Delete(..) => "DELETE",
            };
            let sub = Req {
                method: m.to_string(),
                query: q.clone(),
                ..req.clone()
            };
            let info = sub.info(&ctx.collections(), Some(&body), "default");
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
                return Ok(Err((i, e)));
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
                let out = records::render(ctx, &coll, vec![d], &q, &info).await?;
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
    Ok(Ok(results))
}
