//! `GET /api/files/{collection}/{record}/{name}` (ranges, ETag, `download`, `thumb`, `token`) and
//! `POST /api/files/token`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use basalt_core::schema::{Collection, FieldType};
use futures_util::StreamExt;
use serde_json::json;

use basalt_service::auth::{Caller, TokenKind};
use basalt_service::files::thumbs;
use basalt_service::files::{content_type, file_key, names, Storage};
use basalt_service::records;
use basalt_service::request::parse_query;
use basalt_service::Req;

use crate::error::{error_body, unauthorized, ApiResult};
use crate::extract::Client;
use crate::AppCtx;

/// `POST /api/files/token`: a short-lived token for protected files, for any signed-in record.
pub async fn token(Client(req): Client) -> ApiResult<Response> {
    let Some(c) = req.auth else {
        return Err(unauthorized(
            "The request requires valid record authorization token.",
        ));
    };
    let t = basalt_service::auth::new_typed_token(&c.collection, &c.record, TokenKind::File, &[]);
    Ok(axum::Json(json!({ "token": t })).into_response())
}

fn missing() -> Response {
    error_body(
        StatusCode::NOT_FOUND,
        "The requested resource wasn't found.",
        json!({}),
    )
}

/// `GET /api/files/{collection}/{record}/{name}`.
pub async fn get(
    State(ctx): State<AppCtx>,
    Path((c, rid, name)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    match serve(
        &ctx,
        &c,
        &rid,
        &name,
        &parse_query(raw.as_deref().unwrap_or("")),
        &headers,
    )
    .await
    {
        Ok(r) => r,
        Err(r) => r,
    }
}

async fn serve(
    ctx: &AppCtx,
    c: &str,
    rid: &str,
    name: &str,
    q: &serde_json::Map<String, serde_json::Value>,
    headers: &HeaderMap,
) -> Result<Response, Response> {
    let coll = ctx
        .collection(c)
        .filter(|c| !basalt_service::bootstrap::AUTH_SYSTEM.contains(&c.name.as_str()))
        .ok_or_else(|| {
            error_body(
                StatusCode::NOT_FOUND,
                "Missing or invalid collection context.",
                json!({}),
            )
        })?;
    let rec = records::load_record(ctx, &coll, rid)
        .await
        .map_err(|_| missing())?
        .ok_or_else(missing)?;
    let field = coll
        .fields
        .iter()
        .filter(|f| f.ty() == FieldType::File)
        .find(|f| names(rec.get(&f.name)).iter().any(|n| n == name))
        .ok_or_else(missing)?;
    if field.protected && !may_view_protected(ctx, &coll, rid, q).await {
        return Err(missing());
    }
    let st = ctx.files.storage();
    let s = |k: &str| q.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let mut key = file_key(&coll, rid, name);
    let thumb = s("thumb");
    if !thumb.is_empty() {
        if let Some(k) = thumb_key(ctx, &st, &coll, field, rid, name, thumb).await {
            key = k;
        }
    }
    let download = matches!(s("download"), "1" | "true" | "t");
    respond(&st, &key, name, download, field.protected, headers).await
}

/// Whether the viewRule passes for the owner of the `token` query parameter (a file token; the
/// Authorization header does not count here), or for a guest without one.
async fn may_view_protected(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    rid: &str,
    q: &serde_json::Map<String, serde_json::Value>,
) -> bool {
    let token = q
        .get("token")
        .and_then(|v| v.as_str())
        .filter(|t| !t.is_empty());
    let caller = match token {
        Some(t) => match basalt_service::auth::verify_typed_token(ctx, t, TokenKind::File).await {
            Some((tc, trec, _)) => Some(Caller {
                collection: tc,
                record: trec,
                refreshable: false,
                token: String::new(),
            }),
            None => return false,
        },
        None => None,
    };
    let req = Req {
        auth: caller,
        query: q.clone(),
        ..Default::default()
    };
    let info = req.info(&ctx.collections(), None, "protectedFile");
    matches!(
        records::fetch_with_rule(ctx, coll, rid, &coll.view_rule, &info, None).await,
        Ok(Some(_))
    )
}

/// The stored thumbnail for an allowed size (made now when missing); `None` serves the original
/// (not an image, a size the field does not offer, or an image that cannot be decoded).
async fn thumb_key(
    ctx: &AppCtx,
    st: &Storage,
    coll: &Collection,
    field: &basalt_core::schema::Field,
    rid: &str,
    name: &str,
    thumb: &str,
) -> Option<String> {
    let format = thumbs::format_of(name)?;
    if thumb != "100x100" && !field.thumbs.iter().any(|t| t == thumb) {
        return None;
    }
    let spec = thumbs::parse(thumb)?;
    let key = format!(
        "{}/{thumb}_{name}",
        basalt_service::files::thumbs_prefix(coll, rid, name)
    );
    if let Ok(Some(_)) = st.head(&key).await {
        return Some(key);
    }
    // At most a few at a time; whoever waited finds the thumbnail made by the one before.
    let _permit = ctx.files.thumbs.acquire().await.ok()?;
    if let Ok(Some(_)) = st.head(&key).await {
        return Some(key);
    }
    let original = st
        .get(&file_key(coll, rid, name), Default::default())
        .await
        .ok()?
        .bytes()
        .await
        .ok()?;
    let made = tokio::task::spawn_blocking(move || thumbs::make(&original, spec, format))
        .await
        .ok()?;
    match made {
        Ok(bytes) => {
            if let Err(e) = st.put_bytes(&key, bytes.into()).await {
                tracing::warn!(error = %e, "storing a thumbnail failed");
                return None;
            }
            Some(key)
        }
        Err(e) => {
            tracing::debug!(error = %e, file = %name, "no thumbnail");
            None
        }
    }
}

/// One byte range of a `Range: bytes=…` header (a list of ranges gets the whole file).
fn parse_range(h: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || size == 0 {
            return Some(Err(()));
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end: u64 = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>().ok()?.min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return Some(Err(()));
        }
        (start, end)
    };
    Some(Ok(r))
}

pub(crate) async fn respond(
    st: &Storage,
    key: &str,
    name: &str,
    download: bool,
    protected: bool,
    headers: &HeaderMap,
) -> Result<Response, Response> {
    let meta = match st.head(key).await {
        Ok(Some(m)) => m,
        Ok(None) => return Err(missing()),
        Err(e) => {
            tracing::error!(error = %e, key, "file storage");
            return Err(missing());
        }
    };
    let etag = format!(
        "\"{}\"",
        meta.e_tag
            .clone()
            .unwrap_or_else(|| format!(
                "{:x}-{:x}",
                meta.size,
                meta.last_modified.timestamp_millis()
            ))
            .trim_matches('"')
    );
    let mut h = HeaderMap::new();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    set(&mut h, header::ETAG, &etag);
    set(
        &mut h,
        header::LAST_MODIFIED,
        &meta
            .last_modified
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string(),
    );
    set(
        &mut h,
        header::CACHE_CONTROL,
        if protected {
            "private, max-age=0, must-revalidate"
        } else {
            "max-age=2592000, stale-while-revalidate=86400"
        },
    );
    set(&mut h, header::ACCEPT_RANGES, "bytes");
    set(
        &mut h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'; sandbox",
    );
    set(&mut h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    let served_name = key.rsplit('/').next().unwrap_or(name);
    let mut ct = content_type(served_name).to_string();
    if ct == "application/octet-stream" && meta.size > 0 {
        // No telling extension: the content decides, as it did at upload.
        let head = st
            .get(
                key,
                object_store::GetOptions {
                    range: Some(object_store::GetRange::Bounded(0..meta.size.min(512))),
                    ..Default::default()
                },
            )
            .await;
        if let Ok(g) = head {
            if let Ok(b) = g.bytes().await {
                ct = basalt_service::files::sniff(&b, served_name);
                if ct.starts_with("text/") {
                    ct.push_str("; charset=utf-8");
                }
            }
        }
    }
    set(&mut h, header::CONTENT_TYPE, &ct);
    set(
        &mut h,
        header::CONTENT_DISPOSITION,
        &format!(
            "{}; filename=\"{}\"",
            if download || !basalt_service::files::inline_type(&ct) {
                "attachment"
            } else {
                "inline"
            },
            served_name.replace(['"', '\\'], "")
        ),
    );
    let inm = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    let fresh = match inm {
        Some(v) => v.split(',').any(|t| t.trim() == etag || t.trim() == "*"),
        None => headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .is_some_and(|since| meta.last_modified.timestamp() <= since.timestamp()),
    };
    if fresh {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, meta.size));
    let (status, opts, len) = match range {
        Some(Err(())) => {
            set(
                &mut h,
                header::CONTENT_RANGE,
                &format!("bytes */{}", meta.size),
            );
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, h).into_response());
        }
        Some(Ok((a, b))) => {
            set(
                &mut h,
                header::CONTENT_RANGE,
                &format!("bytes {a}-{b}/{}", meta.size),
            );
            (
                StatusCode::PARTIAL_CONTENT,
                object_store::GetOptions {
                    range: Some(object_store::GetRange::Bounded(a..b + 1)),
                    ..Default::default()
                },
                b + 1 - a,
            )
        }
        None => (StatusCode::OK, Default::default(), meta.size),
    };
    set(&mut h, header::CONTENT_LENGTH, &len.to_string());
    if len == 0 {
        return Ok((status, h, Body::empty()).into_response());
    }
    let got = st.get(key, opts).await.map_err(|e| {
        tracing::error!(error = %e, key, "file storage");
        missing()
    })?;
    let stream = got.into_stream().map(|r| r.map_err(std::io::Error::other));
    Ok((status, h, Body::from_stream(stream)).into_response())
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Some(Ok((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
