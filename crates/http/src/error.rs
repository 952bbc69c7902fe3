//! The one place where errors become HTTP responses: `{"status","message","data"}` for every failure,
//! with the status chosen by the error's kind (the code table of `basalt_core::Error`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use basalt_core::Error;
use basalt_service::ServiceError;
use basalt_store::StoreError;
use serde_json::{json, Map, Value as Json};

/// Every handler returns this error type.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError(ServiceError::from(e).0)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError(e.0)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

pub fn error_body(status: StatusCode, message: &str, data: Json) -> Response {
    let body = json!({"data": data, "message": message, "status": status.as_u16()});
    let mut res = (status, axum::Json(body)).into_response();
    res.extensions_mut()
        .insert(basalt_service::logs::LoggedError {
            message: message.to_string(),
            details: Json::Null,
        });
    res
}

impl ApiError {
    /// The status and the protocol's error body `{status, message, data}`.
    pub fn into_parts(self) -> (StatusCode, Json) {
        match self.0 {
            Error::Validation { message, fields } => {
                // Dotted keys nest, as the protocol reports sub-object errors (`indexes.0` → {"indexes":{"0":…}}).
                let mut data = Map::new();
                for (k, v) in fields {
                    let parts: Vec<&str> = k.split('.').collect();
                    insert_nested(
                        &mut data,
                        &parts,
                        serde_json::to_value(&v).unwrap_or(Json::Null),
                    );
                }
                parts(StatusCode::BAD_REQUEST, &message, Json::Object(data))
            }
            Error::BadRequest(m) => parts(StatusCode::BAD_REQUEST, &sentence(&m), json!({})),
            Error::Forbidden(m) => parts(StatusCode::FORBIDDEN, &sentence(&m), json!({})),
            Error::Unauthorized(m) => parts(StatusCode::UNAUTHORIZED, &sentence(&m), json!({})),
            Error::NotFound(m) => parts(StatusCode::NOT_FOUND, &sentence(&m), json!({})),
            Error::TooManyRequests { message, .. } => {
                parts(StatusCode::TOO_MANY_REQUESTS, &message, json!({}))
            }
            Error::Unavailable {
                message, detail, ..
            } => {
                tracing::warn!(error = %detail, "unavailable");
                parts(StatusCode::SERVICE_UNAVAILABLE, &message, json!({}))
            }
            Error::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                parts(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong while processing your request.",
                    json!({}),
                )
            }
        }
    }
}

fn parts(status: StatusCode, message: &str, data: Json) -> (StatusCode, Json) {
    (
        status,
        json!({"data": data, "message": message, "status": status.as_u16()}),
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = match &self.0 {
            Error::TooManyRequests {
                retry_after_secs, ..
            }
            | Error::Unavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        // For the request log: the answer's message and the error's details.
        let mut logged = basalt_service::logs::LoggedError::of(&self.0, "");
        let (status, body) = self.into_parts();
        logged.message = body["message"].as_str().unwrap_or("").to_string();
        let mut res = (status, axum::Json(body)).into_response();
        res.extensions_mut().insert(logged);
        if let Some(secs) = retry {
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        res
    }
}

fn insert_nested(m: &mut Map<String, Json>, path: &[&str], v: Json) {
    match path {
        [] => {}
        [last] => {
            m.insert(last.to_string(), v);
        }
        [first, rest @ ..] => {
            let e = m
                .entry(first.to_string())
                .or_insert_with(|| Json::Object(Map::new()));
            if !e.is_object() {
                *e = Json::Object(Map::new());
            }
            if let Json::Object(inner) = e {
                insert_nested(inner, rest, v);
            }
        }
    }
}

/// Sentence-cases a message and ends it with a period, as the protocol's messages are.
fn sentence(m: &str) -> String {
    let mut s = m.trim().to_string();
    if let Some(c) = s.get(0..1) {
        let up = c.to_uppercase();
        s.replace_range(0..1, &up);
    }
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

pub fn bad(msg: &str) -> ApiError {
    ApiError(Error::BadRequest(msg.into()))
}
pub fn not_found() -> ApiError {
    ApiError(Error::not_found())
}
pub fn forbidden(msg: &str) -> ApiError {
    ApiError(Error::Forbidden(msg.into()))
}
pub fn unauthorized(msg: &str) -> ApiError {
    ApiError(Error::Unauthorized(msg.into()))
}

/// Reads a whole body into memory, at most `limit` bytes (413 past it), under the process-wide
/// memory budget (503 when exhausted), 408 when the client sends too slowly.
pub async fn read_body(
    req: axum::extract::Request,
    limit: usize,
    held: &mut crate::conn::Held,
) -> Result<axum::body::Bytes, Response> {
    use futures_util::StreamExt;
    let mut buf = Vec::new();
    let mut stream = req.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| body_error(&e))?;
        if buf.len() + chunk.len() > limit {
            return Err(error_body(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request entity too large.",
                json!({}),
            ));
        }
        if !held.take(chunk.len()) {
            return Err(busy());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

/// A failed body read: 408 when the client was too slow, else 400.
pub fn body_error(e: &axum::Error) -> Response {
    if crate::conn::is_too_slow(e) {
        error_body(
            StatusCode::REQUEST_TIMEOUT,
            "The request body arrived too slowly.",
            json!({}),
        )
    } else {
        error_body(
            StatusCode::BAD_REQUEST,
            "Failed to read request body.",
            json!({}),
        )
    }
}

/// 503 when the buffered-body budget is exhausted: the client may retry shortly.
pub fn busy() -> Response {
    let mut r = error_body(
        StatusCode::SERVICE_UNAVAILABLE,
        "The server is busy receiving other requests, try again shortly.",
        json!({}),
    );
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    r
}

/// JSON body extractor whose rejections use the protocol's error shape.
pub struct JsonBody(pub Json);

impl<S: Send + Sync> axum::extract::FromRequest<S> for JsonBody {
    type Rejection = Response;
    async fn from_request(req: axum::extract::Request, _: &S) -> Result<Self, Self::Rejection> {
        // The boundary is case-sensitive: keep the raw header beside the lowercased one.
        let ct_raw = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let ct = ct_raw.to_ascii_lowercase();
        let mut held = crate::conn::Held::default();
        let bytes = read_body(req, crate::handlers::BODY_LIMIT, &mut held).await?;
        if bytes.is_empty() {
            return Ok(JsonBody(Json::Object(Map::new())));
        }
        if ct.starts_with("application/x-www-form-urlencoded") {
            let mut m = Map::new();
            for (k, v) in url_pairs(&bytes) {
                m.insert(k, infer(&v));
            }
            return Ok(JsonBody(Json::Object(m)));
        }
        if ct.starts_with("multipart/form-data") {
            return multipart_body(ct_raw, bytes).await.map(JsonBody);
        }
        match serde_json::from_slice::<Json>(&bytes) {
            Ok(v @ Json::Object(_)) => Ok(JsonBody(v)),
            Ok(_) => Err(error_body(
                StatusCode::BAD_REQUEST,
                "The request body must be a JSON object.",
                json!({}),
            )),
            Err(_) => Err(error_body(
                StatusCode::BAD_REQUEST,
                "Failed to load the submitted data due to invalid formatting.",
                json!({}),
            )),
        }
    }
}

/// A multipart body of an endpoint without files, as the protocol reads it (see [`add_form_value`]);
/// file parts are refused. Record writes, batch and backup uploads read multipart with
/// `files::upload::read`, which streams file parts.
async fn multipart_body(content_type: String, bytes: axum::body::Bytes) -> Result<Json, Response> {
    let bad = |m: &str| error_body(StatusCode::BAD_REQUEST, m, json!({}));
    let boundary =
        multer::parse_boundary(&content_type).map_err(|_| bad("Invalid multipart boundary."))?;
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut m = Map::new();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "multipart");
                return Err(bad("Failed to read the multipart body."));
            }
        };
        let name = field.name().unwrap_or("").to_string();
        if field.file_name().is_some() {
            return Err(bad("This endpoint does not accept file uploads."));
        }
        let text = field
            .text()
            .await
            .map_err(|_| bad("Failed to read the multipart body."))?;
        add_form_value(&mut m, name, &text).map_err(bad)?;
    }
    Ok(Json::Object(m))
}

/// Adds one plain multipart value: `@jsonPayload` is merged verbatim, other values are inferred (bool,
/// number) and repeated keys collected into a list. The error is the 400 message.
pub fn add_form_value(
    m: &mut Map<String, Json>,
    name: String,
    text: &str,
) -> Result<(), &'static str> {
    if name == "@jsonPayload" {
        return match serde_json::from_str::<Json>(text) {
            Ok(Json::Object(o)) => {
                m.extend(o);
                Ok(())
            }
            _ => Err("Failed to load the submitted data due to invalid formatting."),
        };
    }
    let v = infer(text);
    match m.get_mut(&name) {
        Some(Json::Array(a)) => a.push(v),
        Some(prev) => {
            let first = prev.take();
            *prev = Json::Array(vec![first, v]);
        }
        None => {
            m.insert(name, v);
        }
    }
    Ok(())
}

fn url_pairs(b: &[u8]) -> Vec<(String, String)> {
    let s = String::from_utf8_lossy(b);
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |x: &str| {
                percent_encoding::percent_decode_str(&x.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

/// Multipart and urlencoded values are inferred as the protocol says: true/false → bool, a canonical
/// number → number.
pub fn infer(v: &str) -> Json {
    match v {
        "true" => Json::Bool(true),
        "false" => Json::Bool(false),
        _ => match v.parse::<f64>() {
            Ok(f) if f.is_finite() && basalt_core::record::num_json(f) == *v => {
                basalt_core::record::num_json(f)
            }
            _ => Json::String(v.to_string()),
        },
    }
}
