//! `POST /api/batch` over HTTP: the body (JSON or multipart with files named
//! `requests.<i>.<field>`) is read within the batch size limit, then `basalt_service::batch` runs
//! every request in one transaction.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use basalt_service::batch;
use serde_json::{json, Map, Value as Json};

use crate::error::{bad, error_body, forbidden, ApiError, ApiResult};
use crate::extract::Client;
use crate::AppCtx;

/// `POST /api/batch`.
pub async fn batch(
    State(ctx): State<AppCtx>,
    Client(client): Client,
    req: axum::extract::Request,
) -> ApiResult<Response> {
    let cfg = batch::settings(&ctx);
    if !cfg.enabled || cfg.max_requests == 0 {
        crate::files::upload::drain(req).await;
        return Err(forbidden("Batch requests are not allowed."));
    }
    let max_file = crate::files::upload::ceiling(ctx.collections().list.iter().map(|c| &**c));
    let body =
        match crate::files::upload::read(&ctx.files.tmp_dir(), req, max_file, cfg.max_body).await {
            Ok(b) => b,
            Err(r) if r.status() == StatusCode::BAD_REQUEST => {
                return Err(bad("Failed to read the submitted batch data."))
            }
            Err(r) => return Ok(r),
        };
    match batch::execute(&ctx, &client, body.json, body.uploads).await? {
        Ok(results) => Ok(axum::Json(Json::Array(results)).into_response()),
        Err((i, e)) => Ok(batch_failed(i, e.into())),
    }
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
