//! Record operations as every transport calls them: the collection lookup, the rate limits of the
//! action, the rule, the write path, and the output shaping (`expand`, `fields`, hidden fields).
//! A transport decodes its request into a [`Req`] and a body, calls one of these, and encodes what
//! comes back.

use std::sync::Arc;

use basalt_core::filter::compile::RequestInfo;
use basalt_core::record::Data;
use basalt_core::schema::{Collection, CollectionType};
use basalt_core::Error;
use serde_json::{Map, Value as Json};

use crate::auth::admit;
use crate::error::{bad, not_found, ServiceError, ServiceResult};
use crate::files::upload::Upload;
use crate::limits::Action;
use crate::records::{self, ListParams};
use crate::request::Req;
use crate::AppCtx;

/// `_totps` holds authenticator secrets: no records operation serves it, not even to superusers.
fn records_collection(ctx: &AppCtx, key: &str) -> Option<Arc<Collection>> {
    ctx.collection(key).filter(|c| c.name != "_totps")
}

/// The collection a write goes to: the protocol's wording for an unknown one, and view collections
/// refused. Transports call it before reading a body (its file size ceiling).
pub fn collection_for_write(ctx: &AppCtx, key: &str) -> ServiceResult<Arc<Collection>> {
    let c = records::collection_for_write(ctx, key)?;
    writable(&c)?;
    Ok(c)
}

/// Record writes are refused on view collections.
fn writable(coll: &Collection) -> ServiceResult<()> {
    if coll.kind == CollectionType::View {
        return Err(bad("Unsupported collection type."));
    }
    Ok(())
}

/// `page` (≥ 1) and `perPage` (1..=1000, default 30) from the query.
pub fn page_params(req: &Req) -> ServiceResult<(i64, i64)> {
    let num = |k: &str, default: i64| -> ServiceResult<i64> {
        let v = req.q(k);
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

/// Records as they leave the server.
pub enum Items {
    /// JSON objects separated by commas, written straight from the rows (no `expand`/`fields`, no
    /// per-record email decision).
    Raw(Vec<u8>),
    /// Shaped records.
    Json(Json),
}

impl Items {
    /// The bytes of the records, comma-separated (list) or the one record (view).
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Items::Raw(b) => b,
            Items::Json(Json::Array(a)) => {
                let b = serde_json::to_vec(&Json::Array(a)).unwrap_or_default();
                b[1..b.len().saturating_sub(1)].to_vec()
            }
            Items::Json(v) => serde_json::to_vec(&v).unwrap_or_default(),
        }
    }
}

/// One page of a list.
pub struct Page {
    pub items: Items,
    pub page: i64,
    pub per_page: i64,
    /// -1 with `skipTotal`.
    pub total_items: i64,
    pub total_pages: i64,
}

impl Page {
    /// The protocol's list envelope `{items, page, perPage, totalItems, totalPages}`.
    pub fn into_json_bytes(self) -> Vec<u8> {
        let items = self.items.into_bytes();
        let mut b = Vec::with_capacity(items.len() + 96);
        b.extend_from_slice(b"{\"items\":[");
        b.extend_from_slice(&items);
        b.extend_from_slice(
            format!(
                "],\"page\":{},\"perPage\":{},\"totalItems\":{},\"totalPages\":{}}}",
                self.page, self.per_page, self.total_items, self.total_pages
            )
            .as_bytes(),
        );
        b
    }
}

/// No `expand`, no `fields`, and no per-record email decision: rows can be written as JSON directly.
fn fast_path(coll: &Collection, req: &Req, info: &RequestInfo) -> bool {
    req.q("expand").is_empty()
        && req.q("fields").is_empty()
        && (!coll.is_auth() || info.is_superuser())
}

/// Lists records of `c` under its listRule with the caller's `filter`, `sort`, `page`, `perPage`,
/// `skipTotal`, `expand`, `fields`.
pub async fn list(ctx: &AppCtx, req: &Req, c: &str) -> ServiceResult<Page> {
    let coll = records_collection(ctx, c);
    let res = list_inner(ctx, req, coll.clone(), false).await;
    count(ctx, coll.as_deref(), "list", &res);
    res
}

/// Counts a record operation in `basalt_record_operations_total` (collections the caller named
/// but that do not exist are `_unknown`, so guessing names cannot grow the series).
fn count<T>(ctx: &AppCtx, coll: Option<&Collection>, action: &'static str, res: &ServiceResult<T>) {
    let name = coll.map_or("_unknown", |c| c.name.as_str());
    crate::trace::record_collection(name);
    ctx.metrics.record_op(name, action, res);
}

/// The collection a record operation names, or the protocol's 404.
fn found(coll: Option<Arc<Collection>>) -> ServiceResult<Arc<Collection>> {
    coll.ok_or_else(|| ServiceError(Error::NotFound("Missing collection context.".into())))
}

/// A page of records as JSON objects, for transports that shape records themselves (GraphQL): the
/// same admission, rules, filter and output as [`list`], never the raw fast path.
pub struct ObjectPage {
    pub items: Vec<Map<String, Json>>,
    pub page: i64,
    pub per_page: i64,
    /// -1 with `skipTotal`.
    pub total_items: i64,
    pub total_pages: i64,
}

/// [`list`] answering JSON objects.
pub async fn list_objects(ctx: &AppCtx, req: &Req, c: &str) -> ServiceResult<ObjectPage> {
    let coll = records_collection(ctx, c);
    let res = list_inner(ctx, req, coll.clone(), true).await;
    count(ctx, coll.as_deref(), "list", &res);
    let p = res?;
    Ok(ObjectPage {
        items: objects(p.items),
        page: p.page,
        per_page: p.per_page,
        total_items: p.total_items,
        total_pages: p.total_pages,
    })
}

fn objects(items: Items) -> Vec<Map<String, Json>> {
    match items {
        Items::Json(Json::Array(a)) => a
            .into_iter()
            .filter_map(|v| match v {
                Json::Object(m) => Some(m),
                _ => None,
            })
            .collect(),
        Items::Json(Json::Object(m)) => vec![m],
        _ => vec![],
    }
}

/// [`view`] answering a JSON object; `None` when the record is missing or not visible.
pub async fn view_object(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    id: &str,
) -> ServiceResult<Option<Map<String, Json>>> {
    let coll = records_collection(ctx, c);
    let res = view_inner(ctx, req, coll.clone(), id, true).await;
    count(ctx, coll.as_deref(), "view", &res);
    match res {
        Ok(items) => Ok(objects(items).into_iter().next()),
        Err(ServiceError(Error::NotFound(_))) if coll.is_some() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Records of `target` with the given ids under its viewRule, as the caller sees them
/// (`@request.context` is `expand`): a relation followed from records the caller already read. One
/// statement for all ids; missing and invisible ones are absent.
pub async fn related(
    ctx: &AppCtx,
    req: &Req,
    target: &Arc<Collection>,
    ids: &[String],
) -> ServiceResult<Vec<Map<String, Json>>> {
    let info = req.info(&ctx.collections(), None, "expand");
    let data = records::related(ctx, target, ids, &info).await?;
    let mut out = Vec::with_capacity(data.len());
    for d in data {
        out.push(records::output(ctx, target, d, &info).await);
    }
    Ok(out)
}

/// A back-relation list's own arguments: the caller's filter and sort, and how many records each
/// parent gets at most.
pub struct BackQuery<'a> {
    pub filter: &'a str,
    pub sort: &'a str,
    pub per_parent: i64,
}

/// Records of `target` whose relation field `via` points at any of `parents`, listed under
/// `target`'s listRule with the caller's filter and sort, at most `per_parent` per parent (see
/// [`records::back_list`]); each with the parent it belongs to. One statement for all parents.
pub async fn back_related(
    ctx: &AppCtx,
    req: &Req,
    target: &Arc<Collection>,
    via: &str,
    parents: &[String],
    q: &BackQuery<'_>,
) -> ServiceResult<Vec<(String, Map<String, Json>)>> {
    let su = req.is_superuser();
    let Some(rf) = target
        .field(via)
        .filter(|f| f.ty() == basalt_core::schema::FieldType::Relation && (su || !f.hidden))
    else {
        return Ok(vec![]);
    };
    let info = req.info(&ctx.collections(), None, "default");
    let caller = req.caller_key();
    let p = records::BackParams {
        filter: q.filter,
        sort: q.sort,
        per_parent: q.per_parent,
        caller: &caller,
    };
    let rows = records::back_list(ctx, target, rf, parents, &p, &info).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (parent, d) in rows {
        out.push((parent, records::output(ctx, target, d, &info).await));
    }
    Ok(out)
}

async fn list_inner(
    ctx: &AppCtx,
    req: &Req,
    coll: Option<Arc<Collection>>,
    as_objects: bool,
) -> ServiceResult<Page> {
    let coll = found(coll)?;
    admit(ctx, req, Some(&coll), Some(Action::List)).await?;
    let (page, per_page) = page_params(req)?;
    let info = req.info(&ctx.collections(), None, "default");
    let p = ListParams {
        page,
        per_page,
        sort: req.q("sort").into(),
        filter: req.q("filter").into(),
        skip_total: req.qbool("skipTotal"),
        caller: req.caller_key(),
    };
    let mut res = records::list(ctx, &coll, &p, &info).await?;
    let has_pii = crate::pii::has_pii(&coll);
    let items = if !as_objects && fast_path(&coll, req, &info) {
        if has_pii {
            res.rows = crate::pii::present_sealed(ctx, &coll, &res.rows, &info).await?;
        }
        let mut items = Vec::with_capacity(res.rows.rows.len() * 160);
        records::write_rows_json(&coll, &res.rows, info.is_superuser(), &mut items);
        Items::Raw(items)
    } else {
        crate::pii::open(ctx, &coll, &mut res.rows);
        let data = records::rows_to_data(&coll, res.rows);
        let items = Json::Array(
            records::render(ctx, &coll, data, &req.query, &info)
                .await?
                .into_iter()
                .map(Json::Object)
                .collect(),
        );
        Items::Json(records::shape(&req.query, items))
    };
    Ok(Page {
        items,
        page: res.page,
        per_page: res.per_page,
        total_items: res.total_items,
        total_pages: res.total_pages,
    })
}

/// One record of `c` under its viewRule (404 when missing or not visible).
pub async fn view(ctx: &AppCtx, req: &Req, c: &str, id: &str) -> ServiceResult<Items> {
    let coll = records_collection(ctx, c);
    let res = view_inner(ctx, req, coll.clone(), id, false).await;
    count(ctx, coll.as_deref(), "view", &res);
    res
}

async fn view_inner(
    ctx: &AppCtx,
    req: &Req,
    coll: Option<Arc<Collection>>,
    id: &str,
    as_objects: bool,
) -> ServiceResult<Items> {
    let coll = found(coll)?;
    admit(ctx, req, Some(&coll), Some(Action::View)).await?;
    let info = req.info(&ctx.collections(), None, "default");
    let rows = records::fetch_rows_cached(ctx, &coll, id, &coll.view_rule, &info).await?;
    if rows.rows.is_empty() {
        return Err(not_found());
    }
    let has_pii = crate::pii::has_pii(&coll);
    if !as_objects && fast_path(&coll, req, &info) {
        let mut body = Vec::with_capacity(256);
        if has_pii {
            let shown = crate::pii::present_sealed(ctx, &coll, &rows, &info).await?;
            records::write_rows_json(&coll, &shown, info.is_superuser(), &mut body);
        } else {
            records::write_rows_json(&coll, &rows, info.is_superuser(), &mut body);
        }
        return Ok(Items::Raw(body));
    }
    let rows = if has_pii {
        crate::pii::open_copy(ctx, &coll, &rows)
    } else {
        Arc::unwrap_or_clone(rows)
    };
    let data = records::rows_to_data(&coll, rows);
    one(
        ctx,
        req,
        &coll,
        data.into_iter().next().unwrap_or_default(),
        &info,
    )
    .await
    .map(Items::Json)
}

/// One record shaped for the caller (output rules, expand, fields).
async fn one(
    ctx: &AppCtx,
    req: &Req,
    coll: &Arc<Collection>,
    data: Data,
    info: &RequestInfo,
) -> ServiceResult<Json> {
    let out = records::render(ctx, coll, vec![data], &req.query, info).await?;
    Ok(records::shape(
        &req.query,
        Json::Object(out.into_iter().next().unwrap_or_default()),
    ))
}

fn body_data(body: Json) -> Data {
    match body {
        Json::Object(m) => m,
        _ => Data::new(),
    }
}

/// A write the caller was admitted to (collection found and writable, rate limits passed). Only
/// [`admit_write`] makes one, so a transport cannot reach [`create`] or [`update`] without the
/// limits, and it can admit before it reads a possibly large body.
pub struct Admitted {
    coll: Arc<Collection>,
    action: Action,
}

impl Admitted {
    /// The collection written to (its file size ceiling bounds the body's file parts).
    pub fn collection(&self) -> &Arc<Collection> {
        &self.coll
    }
}

/// Admits a create (`Action::Create`) or update (`Action::Update`) of collection `c`.
pub async fn admit_write(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    action: Action,
) -> ServiceResult<Admitted> {
    let coll = collection_for_write(ctx, c)?;
    admit(ctx, req, Some(&coll), Some(action)).await?;
    Ok(Admitted { coll, action })
}

/// Creates a record from a decoded body and its uploads; answers the record as the caller sees it.
pub async fn create(
    ctx: &AppCtx,
    req: &Req,
    w: Admitted,
    body: Json,
    uploads: Vec<Upload>,
) -> ServiceResult<Json> {
    if w.action != Action::Create {
        return Err(bad("Something went wrong while processing your request."));
    }
    let coll = w.coll;
    let body = body_data(body);
    let info = req.info(&ctx.collections(), Some(&body), "default");
    let mut w = records::WriteOut::default();
    let r = records::create_in(ctx, &coll, &body, uploads, &info, None, &mut w).await;
    let data = w.finish(ctx, r).await;
    crate::trace::record_collection(&coll.name);
    ctx.metrics.record_op(&coll.name, "create", &data);
    one(ctx, req, &coll, data?, &info).await
}

/// Updates record `id` under its updateRule.
pub async fn update(
    ctx: &AppCtx,
    req: &Req,
    w: Admitted,
    id: &str,
    body: Json,
    uploads: Vec<Upload>,
) -> ServiceResult<Json> {
    if w.action != Action::Update {
        return Err(bad("Something went wrong while processing your request."));
    }
    let coll = w.coll;
    let body = body_data(body);
    let info = req.info(&ctx.collections(), Some(&body), "default");
    let mut w = records::WriteOut::default();
    let r = records::update_in(ctx, &coll, id, &body, uploads, &info, None, &mut w).await;
    let data = w.finish(ctx, r).await;
    crate::trace::record_collection(&coll.name);
    ctx.metrics.record_op(&coll.name, "update", &data);
    one(ctx, req, &coll, data?, &info).await
}

/// Deletes record `id` of `c` under its deleteRule (references cleared or cascaded).
pub async fn delete(ctx: &AppCtx, req: &Req, c: &str, id: &str) -> ServiceResult<()> {
    let coll = records_collection(ctx, c);
    let res = delete_inner(ctx, req, coll.clone(), id).await;
    count(ctx, coll.as_deref(), "delete", &res);
    res
}

async fn delete_inner(
    ctx: &AppCtx,
    req: &Req,
    coll: Option<Arc<Collection>>,
    id: &str,
) -> ServiceResult<()> {
    let coll = found(coll)?;
    writable(&coll)?;
    admit(ctx, req, Some(&coll), Some(Action::Delete)).await?;
    let info = req.info(&ctx.collections(), None, "default");
    records::delete(ctx, &coll, id, &info).await
}
