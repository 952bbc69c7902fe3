//! GraphQL over the collections (`/api/graphql`): a schema generated from the collections
//! ([`schema`]), queries planned from their selection sets into one statement per nesting level
//! ([`plan`]), limits checked before anything runs ([`cost`]), subscriptions over the
//! `graphql-transport-ws` protocol ([`ws`]). Every operation calls the same service functions as REST
//! (`crud`, the sign-in flows, the realtime hub), so rules, validation, rate limits, lockout, PII
//! masks and the outbox apply as they do there.
//!
//! Built on `async-graphql`'s dynamic schema (the maintained Rust GraphQL server; parsing,
//! validation, introspection and execution per the spec), without its HTTP integrations: the routes,
//! the multipart request spec and the WebSocket protocol are this module's, over axum.

mod cost;
mod fast;
mod plan;
mod schema;
mod ws;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::dynamic::Schema;
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::ErrorExtensions;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use basalt_service::error::ServiceError;
use basalt_service::state::Collections;
use basalt_service::Req;
use serde_json::{json, Map, Value as Json};

use crate::error::{error_body, ApiError};
use crate::extract::Client;
use crate::AppCtx;

pub use cost::Operation;

/// The endpoint's state: the application and the schema built for its current collections.
pub struct Gql {
    pub ctx: AppCtx,
    cache: Mutex<Option<(Arc<Collections>, Schema)>>,
    /// Parsed documents by query text: clients send the same few queries again and again, and
    /// parsing is a tenth of a small query's time.
    docs: Mutex<HashMap<String, Arc<ExecutableDocument>>>,
}

/// Documents kept parsed (the map is emptied when full).
const DOCS_CACHED: usize = 512;
/// Queries longer than this are parsed each time rather than kept.
const DOC_CACHE_MAX_LEN: usize = 16 << 10;

pub type GqlState = Arc<Gql>;

impl Gql {
    pub fn new(ctx: AppCtx) -> GqlState {
        Arc::new(Gql {
            ctx,
            cache: Mutex::new(None),
            docs: Mutex::new(HashMap::new()),
        })
    }

    /// The schema of the current collections: rebuilt when the collection snapshot changed (a schema
    /// change on this node or, through the cluster's notifications, on another), shared until then.
    /// A request holds the schema it started with; the swap is atomic.
    pub fn schema(&self) -> Result<Schema, ServiceError> {
        let cols = self.ctx.collections();
        let mut g = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((c, s)) = g.as_ref() {
            if Arc::ptr_eq(c, &cols) {
                return Ok(s.clone());
            }
        }
        let began = std::time::Instant::now();
        let s = schema::build(&cols, &self.ctx.graphql).map_err(|e| {
            ServiceError(basalt_core::Error::internal(format!("graphql schema: {e}")))
        })?;
        tracing::debug!(
            collections = cols.list.len(),
            ms = began.elapsed().as_millis() as u64,
            "graphql schema built"
        );
        *g = Some((cols, s.clone()));
        Ok(s)
    }
}

impl Gql {
    /// The parsed query (a syntax error is its message).
    pub fn document(&self, query: &str) -> Result<Arc<ExecutableDocument>, String> {
        if let Some(d) = self
            .docs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(query)
        {
            return Ok(d.clone());
        }
        let d = Arc::new(async_graphql::parser::parse_query(query).map_err(|e| e.to_string())?);
        if query.len() <= DOC_CACHE_MAX_LEN {
            let mut g = self.docs.lock().unwrap_or_else(|p| p.into_inner());
            if g.len() >= DOCS_CACHED {
                g.clear();
            }
            g.insert(query.to_string(), d.clone());
        }
        Ok(d)
    }

    /// Parses and checks `r` against the limits, and makes the request to execute (the parsed
    /// document handed over, so it is not parsed again). With `fast`, a query without introspection
    /// is marked for the query executor ([`fast`]); its answer arrives in the returned slot.
    pub fn prepare(
        &self,
        req: Req,
        r: GqlRequest,
        uploads: Uploads,
        fast: bool,
    ) -> Result<Prepared, cost::Refused> {
        let doc = self
            .document(&r.query)
            .map_err(|message| cost::Refused { op: None, message })?;
        let checked = cost::check(
            &self.ctx,
            &doc,
            r.operation_name.as_deref(),
            &r.variables,
            &self.ctx.graphql,
        )?;
        let out = Arc::new(Mutex::new(None));
        let op = fast::operation(&doc, r.operation_name.as_deref());
        // Defaults written in: async-graphql's engine leaves a defaulted variable out of
        // `@include(if:)`/`@skip(if:)`, so both executors get every value explicitly.
        let variables = match op {
            Some(op) => Json::Object(fast::variables(op, &r.variables)),
            None => r.variables,
        };
        let fast_query = match variables.as_object() {
            Some(v) if fast && fast::runs(&doc, r.operation_name.as_deref()) => {
                Some(fast::FastQuery {
                    doc: doc.clone(),
                    operation: r.operation_name.clone(),
                    variables: v.clone(),
                    out: out.clone(),
                })
            }
            _ => None,
        };
        let mut request = async_graphql::Request::new(r.query)
            .variables(async_graphql::Variables::from_json(variables))
            .data(self.ctx.clone())
            .data(req)
            .data(uploads);
        if let Some(q) = fast_query {
            request = request.data(q);
        }
        if let Some(n) = r.operation_name {
            request = request.operation_name(n);
        }
        request.set_parsed_query((*doc).clone());
        Ok(Prepared {
            request,
            checked,
            out,
        })
    }
}

/// A request ready to execute.
pub struct Prepared {
    pub request: async_graphql::Request,
    pub checked: cost::Checked,
    /// The query executor's answer (and whether it holds errors), when it ran the operation.
    pub out: fast::Answer,
}

/// `GET|POST /api/graphql`, and the WebSocket upgrade on the same path.
pub fn routes<S: Clone + Send + Sync + 'static>(ctx: AppCtx) -> Router<S> {
    let state = Gql::new(ctx);
    Router::new()
        .route("/api/graphql", get(get_graphql).post(post_graphql))
        .with_state(state)
}

/// A GraphQL request as the transports decode it.
#[derive(Default)]
pub struct GqlRequest {
    pub query: String,
    pub variables: Json,
    pub operation_name: Option<String>,
}

impl GqlRequest {
    /// From the JSON body (or the GET parameters as a map): `{query, variables, operationName}`.
    pub fn from_json(v: &Json) -> Result<GqlRequest, String> {
        let query = v
            .get("query")
            .and_then(Json::as_str)
            .ok_or("the request has no \"query\" string")?
            .to_string();
        let variables = match v.get("variables") {
            None | Some(Json::Null) => Json::Object(Map::new()),
            Some(Json::String(s)) if s.is_empty() => Json::Object(Map::new()),
            // GET passes them as JSON text.
            Some(Json::String(s)) => serde_json::from_str(s)
                .map_err(|_| "\"variables\" is not a JSON object".to_string())?,
            Some(o @ Json::Object(_)) => o.clone(),
            Some(_) => return Err("\"variables\" is not a JSON object".into()),
        };
        if !variables.is_object() {
            return Err("\"variables\" is not a JSON object".into());
        }
        let operation_name = v
            .get("operationName")
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        Ok(GqlRequest {
            query,
            variables,
            operation_name,
        })
    }
}

/// Files of a multipart request (the GraphQL multipart request spec), by the marker the variables
/// hold in their place; a mutation takes the ones its input names.
#[derive(Default)]
pub struct Uploads(pub Mutex<HashMap<String, basalt_service::files::upload::Upload>>);

/// Runs one operation for `req` and answers the spec's `{data, errors}` as JSON bytes. `allowed`
/// limits which operation types may run (GET: queries only).
pub async fn execute(
    gql: &Gql,
    req: Req,
    r: GqlRequest,
    uploads: Uploads,
    allowed: &[Operation],
) -> Vec<u8> {
    let began = std::time::Instant::now();
    let done = |op: &'static str, outcome: &'static str| {
        gql.ctx
            .metrics
            .graphql_op(op, outcome, began.elapsed().as_secs_f64());
    };
    let schema = match gql.schema() {
        Ok(s) => s,
        Err(e) => return errors_only(vec![error_json(e)]).to_string().into_bytes(),
    };
    let req_for_admit = req.clone();
    let Prepared {
        request,
        checked,
        out,
    } = match gql.prepare(req, r, uploads, true) {
        Ok(x) => x,
        Err(cost::Refused { op, message: m }) => {
            done(op.map_or("unknown", Operation::label), "refused");
            return errors_only(vec![bad_json(&m, "bad_request")])
                .to_string()
                .into_bytes();
        }
    };
    let op = checked.op.label();
    if let Err(e) = admit_by_path(gql, &checked, &req_for_admit).await {
        done(op, "refused");
        return errors_only(vec![error_json(e)]).to_string().into_bytes();
    }
    if !allowed.contains(&checked.op) {
        done(op, "refused");
        let m = format!(
            "{} operations are not allowed here; send them with POST.",
            checked.op.name()
        );
        return errors_only(vec![bad_json(&m, "bad_request")])
            .to_string()
            .into_bytes();
    }
    let mut resp = schema.execute(request).await;
    if let Some((b, errors)) = out.lock().unwrap_or_else(|p| p.into_inner()).take() {
        done(op, if errors { "errors" } else { "ok" });
        return b;
    }
    complete_errors(&mut resp, &checked.roots);
    done(
        op,
        match (
            resp.errors.is_empty(),
            resp.data == async_graphql::Value::Null,
        ) {
            (true, _) => "ok",
            (false, true) if resp.errors.iter().all(|e| e.path.is_empty()) => "refused",
            _ => "errors",
        },
    );
    serde_json::to_vec(&resp).unwrap_or_default()
}

/// Rate limits for an operation no service call limits itself (see [`cost::Checked::admit_by_path`]):
/// the path label rules of `/api/graphql`, as REST applies to routes without a typed action.
pub async fn admit_by_path(
    gql: &Gql,
    checked: &cost::Checked,
    req: &Req,
) -> Result<(), ServiceError> {
    if checked.admit_by_path {
        basalt_service::auth::admit(&gql.ctx, req, None, None).await?;
    }
    Ok(())
}

/// Gives every error `extensions.code` (the service's code table; parse and validation errors are
/// `bad_request`) and `status`, and an error a root field raised its `path` (async-graphql's dynamic
/// schema reports only the location).
pub fn complete_errors(resp: &mut async_graphql::Response, roots: &[((usize, usize), String)]) {
    for e in &mut resp.errors {
        // A resolver's error (it has a code) at a root field: its path, and the field is `null` in
        // `data` as the spec says (async-graphql leaves it out). Parse and validation errors have
        // no code and no path.
        let raised = e
            .extensions
            .as_ref()
            .is_some_and(|x| x.get("code").is_some());
        if raised && e.path.is_empty() {
            let at = e.locations.first().map(|l| (l.line, l.column));
            if let Some((_, key)) = roots.iter().find(|(p, _)| Some(*p) == at) {
                e.path = vec![async_graphql::PathSegment::Field(key.clone())];
                if let async_graphql::Value::Object(m) = &mut resp.data {
                    m.entry(async_graphql::Name::new(key))
                        .or_insert(async_graphql::Value::Null);
                }
            }
        }
        let x = e.extensions.get_or_insert_with(Default::default);
        if x.get("code").is_none() {
            x.set("code", "bad_request");
        }
        if x.get("status").is_none() {
            x.set("status", 400);
        }
    }
}

fn errors_only(errors: Vec<Json>) -> Json {
    json!({ "data": null, "errors": errors })
}

fn bad_json(message: &str, code: &str) -> Json {
    json!({"message": message, "extensions": {"code": code, "status": 400}})
}

/// A service error as a GraphQL error object (outside execution).
fn error_json(e: ServiceError) -> Json {
    let code = e.0.code();
    let retry = retry_after(&e);
    let (status, body) = ApiError::from(e).into_parts();
    let mut x = json!({"code": code, "status": status.as_u16(), "data": body["data"]});
    if let Some(s) = retry {
        x["retryAfter"] = json!(s);
    }
    json!({"message": body["message"], "extensions": x})
}

fn retry_after(e: &ServiceError) -> Option<u64> {
    match &e.0 {
        basalt_core::Error::TooManyRequests {
            retry_after_secs, ..
        }
        | basalt_core::Error::Unavailable {
            retry_after_secs, ..
        } => Some(*retry_after_secs),
        _ => None,
    }
}

/// A service error as a resolver error: the message and `data` REST would answer, `code` from the
/// code table and the HTTP `status` REST would use.
pub fn gql_error(e: ServiceError) -> async_graphql::Error {
    let code = e.0.code();
    let retry = retry_after(&e);
    let (status, body) = ApiError::from(e).into_parts();
    let message = body["message"].as_str().unwrap_or("").to_string();
    let data = async_graphql::Value::from_json(body["data"].clone()).unwrap_or_default();
    async_graphql::Error::new(message).extend_with(move |_, x| {
        x.set("code", code);
        x.set("status", status.as_u16());
        x.set("data", data.clone());
        if let Some(s) = retry {
            x.set("retryAfter", s);
        }
    })
}

/// Whether the client asked for a page (a browser) rather than a GraphQL answer.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

fn json_response(body: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/graphql-response+json")],
        body,
    )
        .into_response()
}

fn disabled() -> Response {
    ApiError::from(basalt_core::Error::not_found()).into_response()
}

/// `GET /api/graphql`: a WebSocket upgrade (subscriptions), a query in the URL, or the GraphiQL page.
async fn get_graphql(State(gql): State<GqlState>, request: Request) -> Response {
    if !gql.ctx.graphql.enabled {
        return disabled();
    }
    let (mut parts, body) = request.into_parts();
    let is_ws = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Client(req) = match <Client as axum::extract::FromRequestParts<AppCtx>>::from_request_parts(
        &mut parts, &gql.ctx,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return ApiError::into_response(e),
    };
    if is_ws {
        let upgrade =
            match <axum::extract::ws::WebSocketUpgrade as axum::extract::FromRequestParts<
                GqlState,
            >>::from_request_parts(&mut parts, &gql)
            .await
            {
                Ok(u) => u,
                Err(e) => return e.into_response(),
            };
        return ws::upgrade(gql, req, upgrade);
    }
    drop(body);
    if req.query.get("query").is_none() {
        if gql.ctx.graphql.graphiql && wants_html(&parts.headers) {
            return Html(GRAPHIQL).into_response();
        }
        return error_body(
            StatusCode::BAD_REQUEST,
            "Send a GraphQL query: POST a JSON body {\"query\", \"variables\", \"operationName\"}, or GET with ?query=.",
            json!({}),
        );
    }
    let r = match GqlRequest::from_json(&Json::Object(req.query.clone())) {
        Ok(r) => r,
        Err(m) => {
            return error_body(
                StatusCode::BAD_REQUEST,
                &format!("Invalid GraphQL request: {m}."),
                json!({}),
            )
        }
    };
    let mut req = req;
    // The query string carried the operation, not `@request.query` facts for the rules.
    req.query = Map::new();
    json_response(execute(&gql, req, r, Uploads::default(), &[Operation::Query]).await)
}

/// `POST /api/graphql`: a JSON body, or the GraphQL multipart request spec (`operations`, `map`,
/// files) for mutations with files.
async fn post_graphql(State(gql): State<GqlState>, request: Request) -> Response {
    if !gql.ctx.graphql.enabled {
        return disabled();
    }
    let (mut parts, body) = request.into_parts();
    let Client(mut req) =
        match <Client as axum::extract::FromRequestParts<AppCtx>>::from_request_parts(
            &mut parts, &gql.ctx,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => return ApiError::into_response(e),
        };
    req.query = Map::new();
    let request = Request::from_parts(parts, body);
    let ceiling = basalt_service::files::upload::ceiling(
        gql.ctx.collections().list.iter().map(|c| c.as_ref()),
    );
    let body = match crate::files::upload::read(
        &gql.ctx.files.tmp_dir(),
        request,
        ceiling,
        crate::handlers::BODY_LIMIT as u64 + ceiling.saturating_mul(10),
    )
    .await
    {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let (r, uploads) = if body.uploads.is_empty() && body.json.get("operations").is_none() {
        match GqlRequest::from_json(&body.json) {
            Ok(r) => (r, Uploads::default()),
            Err(m) => {
                return error_body(
                    StatusCode::BAD_REQUEST,
                    &format!("Invalid GraphQL request: {m}."),
                    json!({}),
                )
            }
        }
    } else {
        match multipart_request(body) {
            Ok(x) => x,
            Err(m) => {
                return error_body(
                    StatusCode::BAD_REQUEST,
                    &format!("Invalid GraphQL multipart request: {m}."),
                    json!({}),
                )
            }
        }
    };
    let all = [Operation::Query, Operation::Mutation];
    json_response(execute(&gql, req, r, uploads, &all).await)
}

/// The multipart request spec: `operations` is the request with `null` where files go, `map` names
/// for each file part the variable paths it fills (`{"0": ["variables.input.avatar"]}`). Each path
/// gets a marker string the mutation resolves to the file.
fn multipart_request(body: crate::files::upload::Body) -> Result<(GqlRequest, Uploads), String> {
    let text = |k: &str| -> Result<Json, String> {
        match body.json.get(k) {
            Some(Json::String(s)) => {
                serde_json::from_str(s).map_err(|_| format!("\"{k}\" is not valid JSON"))
            }
            Some(v @ Json::Object(_)) => Ok(v.clone()),
            _ => Err(format!("the \"{k}\" part is missing")),
        }
    };
    let mut ops = text("operations")?;
    let map = text("map")?;
    let map = map.as_object().ok_or("\"map\" is not an object")?;
    let mut files: HashMap<String, basalt_service::files::upload::Upload> = body
        .uploads
        .into_iter()
        .map(|u| (u.part.clone(), u))
        .collect();
    let mut out = HashMap::new();
    for (part, paths) in map {
        let up = files
            .remove(part)
            .ok_or_else(|| format!("the file part \"{part}\" named in \"map\" is missing"))?;
        let marker = format!("{}{part}", schema::UPLOAD_MARKER);
        for p in paths
            .as_array()
            .ok_or("\"map\" values are lists of paths")?
        {
            let p = p.as_str().ok_or("\"map\" paths are strings")?;
            set_path(&mut ops, p, Json::String(marker.clone()))
                .ok_or_else(|| format!("the path \"{p}\" is not in the operations"))?;
        }
        out.insert(marker, up);
    }
    let r = GqlRequest::from_json(&ops)?;
    Ok((r, Uploads(Mutex::new(out))))
}

/// Sets the value at a dotted path (`variables.input.files.0`) that must already exist.
fn set_path(v: &mut Json, path: &str, to: Json) -> Option<()> {
    let mut cur = v;
    for seg in path.split('.') {
        cur = match cur {
            Json::Object(m) => m.get_mut(seg)?,
            Json::Array(a) => a.get_mut(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    *cur = to;
    Some(())
}

/// The browser page: GraphiQL from its CDN build, pointed at this endpoint (queries over POST,
/// subscriptions over the same path's WebSocket).
const GRAPHIQL: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Basalt GraphQL</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="https://unpkg.com/graphiql@3/graphiql.min.css">
<style>html,body,#graphiql{height:100%;margin:0}</style></head>
<body><div id="graphiql">Loading GraphiQL…</div>
<script src="https://unpkg.com/react@18/umd/react.production.min.js"></script>
<script src="https://unpkg.com/react-dom@18/umd/react-dom.production.min.js"></script>
<script src="https://unpkg.com/graphiql@3/graphiql.min.js"></script>
<script>
const url = location.origin + location.pathname;
const token = localStorage.getItem('basalt_graphql_token') || '';
const headers = token ? {Authorization: token} : {};
const fetcher = GraphiQL.createFetcher({
  url, headers,
  subscriptionUrl: url.replace(/^http/, 'ws'),
  wsConnectionParams: headers,
});
ReactDOM.createRoot(document.getElementById('graphiql')).render(
  React.createElement(GraphiQL, {fetcher, defaultEditorToolsVisibility: true}));
</script></body></html>
"#;
