//! Static files (`--public-dir`, PocketBase's `pb_public`): the folder's files at `/`, through
//! tower-http's `ServeDir` (paths kept inside the folder, `index.html` for a directory, never a
//! listing, `Last-Modified` with `If-Modified-Since`, ranges). With the index fallback (the
//! default, as PocketBase's `--indexFallback`), a path with no file answers the folder's
//! `index.html`, so a single-page app's routes load. HTML is revalidated on every load
//! (`Cache-Control: no-cache`); other files may be cached for an hour.

use std::path::Path;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

/// Answers `req` from the folder `dir`.
pub async fn serve(dir: &Path, index_fallback: bool, req: Request) -> Response {
    let files = ServeDir::new(dir).append_index_html_on_directories(true);
    let index = dir.join("index.html");
    let res = if index_fallback && index.is_file() {
        files.fallback(ServeFile::new(index)).oneshot(req).await
    } else {
        files.oneshot(req).await
    };
    let mut res = match res {
        Ok(r) => r.into_response(),
        Err(e) => match e {},
    };
    let html = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/html"));
    if res.status().is_success() || res.status() == axum::http::StatusCode::NOT_MODIFIED {
        res.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(if html {
                "no-cache"
            } else {
                "public, max-age=3600"
            }),
        );
    }
    res
}
