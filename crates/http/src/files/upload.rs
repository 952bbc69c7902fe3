//! Reading a record write's body: JSON, urlencoded or multipart. Multipart file parts are streamed to
//! temporary files as they arrive; plain parts and `@jsonPayload` become the JSON body.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value as Json};
use tokio::io::AsyncWriteExt;

use crate::error::{add_form_value, error_body, JsonBody};
use crate::handlers::BODY_LIMIT;
pub use basalt_service::files::upload::{ceiling, Upload};

/// A parsed write body.
pub struct Body {
    pub json: Json,
    pub uploads: Vec<Upload>,
}

fn bad(msg: &str) -> Response {
    error_body(StatusCode::BAD_REQUEST, msg, json!({}))
}

/// How much of an oversized part is read and discarded before the request is cut off: enough for a
/// client to get its validation error instead of a reset connection.
const DRAIN_LIMIT: u64 = 64 << 20;

/// Reads a write body; file parts are written to new files in `tmp` (the storage's temporary folder,
/// `ctx.files.tmp_dir()`). File parts larger than `max_file` are discarded past that size and marked
/// truncated (the record's validation reports them). A body larger than `max_total` in all is
/// refused with 413.
pub async fn read(
    tmp: &std::path::Path,
    req: Request,
    max_file: u64,
    max_total: u64,
) -> Result<Body, Response> {
    let too_large = || {
        error_body(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request entity too large.",
            json!({}),
        )
    };
    let announced = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max_total) {
        drain(req).await;
        return Err(too_large());
    }
    let ct = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        let JsonBody(json) = JsonBody::from_request(req, &()).await?;
        return Ok(Body {
            json,
            uploads: Vec::new(),
        });
    }
    let boundary = multer::parse_boundary(&ct).map_err(|_| bad("Invalid multipart boundary."))?;
    let mut mp = multer::Multipart::new(req.into_body().into_data_stream(), boundary);
    let mut m = Map::new();
    let mut uploads = Vec::new();
    let mut text_bytes = 0usize;
    let mut total = 0u64;
    let read_err = |e: multer::Error| {
        tracing::debug!(error = %e, "multipart");
        if crate::conn::is_too_slow(&e) {
            return error_body(
                StatusCode::REQUEST_TIMEOUT,
                "The request body arrived too slowly.",
                json!({}),
            );
        }
        bad("Failed to read the multipart body.")
    };
    // Text parts (and `@jsonPayload`) are held in memory: under the process-wide budget.
    let mut held = crate::conn::Held::default();
    loop {
        let Some(mut field) = mp.next_field().await.map_err(read_err)? else {
            break;
        };
        let name = field.name().unwrap_or("").to_string();
        if let Some(file_name) = field.file_name().map(str::to_string) {
            let path = tmp.join(format!("up-{}", basalt_core::id::random_id(20)));
            let mut up = Upload {
                part: name,
                original: file_name,
                path,
                size: 0,
                mime: String::new(),
                truncated: false,
            };
            let mut f = tokio::fs::File::create(&up.path).await.map_err(|e| {
                tracing::error!(error = %e, "cannot create an upload file");
                error_body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong while processing your request.",
                    json!({}),
                )
            })?;
            let mut head: Vec<u8> = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(read_err)? {
                up.size += chunk.len() as u64;
                total += chunk.len() as u64;
                if total > max_total {
                    return Err(too_large());
                }
                if head.len() < 512 {
                    let n = (512 - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..n]);
                }
                if up.size > max_file {
                    up.truncated = true;
                    if up.size > max_file.saturating_add(DRAIN_LIMIT) {
                        return Err(error_body(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "Request entity too large.",
                            json!({}),
                        ));
                    }
                    continue;
                }
                if let Err(e) = f.write_all(&chunk).await {
                    tracing::error!(error = %e, "cannot write an upload file");
                    return Err(error_body(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Something went wrong while processing your request.",
                        json!({}),
                    ));
                }
            }
            if f.flush().await.is_err() {
                return Err(bad("Failed to read the multipart body."));
            }
            drop(f);
            // An empty file input (no file chosen) sends an empty part without a name.
            if up.original.is_empty() && up.size == 0 {
                continue;
            }
            up.mime = basalt_service::files::sniff(&head, &up.original);
            uploads.push(up);
            continue;
        }
        let mut raw = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(read_err)? {
            text_bytes += chunk.len();
            total += chunk.len() as u64;
            if total > max_total {
                return Err(too_large());
            }
            if text_bytes > BODY_LIMIT {
                return Err(error_body(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request entity too large.",
                    json!({}),
                ));
            }
            if !held.take(chunk.len()) {
                return Err(crate::error::busy());
            }
            raw.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&raw);
        add_form_value(&mut m, name, &text).map_err(bad)?;
    }
    Ok(Body {
        json: Json::Object(m),
        uploads,
    })
}

/// Reads and discards what is left of a request body (at most 16 MiB) before an early error answer:
/// closing a connection with unread data resets it, and the client would never see the error.
pub async fn drain(req: Request) {
    use futures_util::StreamExt;
    let mut s = req.into_body().into_data_stream();
    let mut n = 0usize;
    while let Some(Ok(c)) = s.next().await {
        n += c.len();
        if n > 16 << 20 {
            break;
        }
    }
}
