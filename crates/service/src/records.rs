//! Record reads and writes: rules, filters, expand and the one write path (validate, check rules,
//! write, commit).

use std::sync::Arc;

use basalt_core::filter::ast::SortItem;
use basalt_core::filter::compile::{Compiler, RequestInfo, MAIN};
use basalt_core::record::{self, column_to_json, id_of, json_to_column, Data, WriteCtx};
use basalt_core::schema::{Collection, FieldType};
use basalt_core::sql::{ident, Sql, Value};
use basalt_core::{filter, Error, FieldError, FieldErrors};
use basalt_events::Action;
use basalt_store::{Rows, Tx};
use serde_json::{Map, Value as Json};

use crate::error::{bad, forbidden, not_found, ServiceError, ServiceResult};
use crate::files::upload::{attach, NewFile, Upload};
use crate::files::FileOps;
use crate::AppCtx;

pub const SUPERUSERS_ONLY: &str = "Only superusers can perform this action.";

/// Converts result rows into record data keyed by field name.
pub fn rows_to_data(coll: &Collection, rows: Rows) -> Vec<Data> {
    let map: Vec<Option<usize>> = rows
        .columns
        .iter()
        .map(|c| coll.fields.iter().position(|f| &f.name == c))
        .collect();
    let dek_at = rows
        .columns
        .iter()
        .position(|c| c == basalt_core::pii::DEK_COLUMN);
    rows.rows
        .into_iter()
        .map(|r| {
            let mut d = Data::new();
            for (i, v) in r.into_iter().enumerate() {
                if let Some(Some(fi)) = map.get(i) {
                    let f = &coll.fields[*fi];
                    d.insert(f.name.clone(), column_to_json(f, v));
                } else if Some(i) == dek_at {
                    // The wrapped data key, for the write path (never output: records leave
                    // through `output`, which writes fields only).
                    d.insert(
                        basalt_core::pii::DEK_COLUMN.into(),
                        Json::String(v.into_string()),
                    );
                }
            }
            d
        })
        .collect()
}

/// Rows of `coll` as read from its table, pii values decrypted (see [`crate::pii::open`]).
fn opened(ctx: &AppCtx, coll: &Collection, mut rows: Rows) -> Rows {
    crate::pii::open(ctx, coll, &mut rows);
    rows
}

fn select_all(ctx: &AppCtx, coll: &Collection) -> Sql {
    let mut s = ctx.sql();
    s.push("SELECT ");
    for (i, f) in coll.fields.iter().enumerate() {
        if i > 0 {
            s.push(", ");
        }
        s.push(MAIN).push(".").ident(&f.name);
    }
    if crate::pii::has_pii(coll) {
        s.push(", ")
            .push(MAIN)
            .push(".")
            .ident(basalt_core::pii::DEK_COLUMN);
    }
    s.push(" FROM ").ident(&coll.name).push(" AS ").push(MAIN);
    s
}

/// Writes rows as record JSON objects, comma-separated, straight from the stored values: the fast path
/// for reads without `expand`/`fields`. Produces exactly what [`output`] produces for a viewer who may
/// see hidden fields iff `show_hidden`; callers use it only where email visibility needs no per-record
/// check (base collections, or superusers).
pub fn write_rows_json(coll: &Collection, rows: &Rows, show_hidden: bool, out: &mut Vec<u8>) {
    let fields: Vec<Option<&basalt_core::schema::Field>> = rows
        .columns
        .iter()
        .map(|c| {
            coll.fields.iter().find(|f| &f.name == c).filter(|f| {
                f.ty() != FieldType::Password
                    && !(coll.is_auth() && f.name == "tokenKey")
                    && (show_hidden || !f.hidden)
            })
        })
        .collect();
    let mut head = Vec::with_capacity(64);
    head.extend_from_slice(b"{\"collectionId\":");
    let _ = serde_json::to_writer(&mut head, &coll.id);
    head.extend_from_slice(b",\"collectionName\":");
    let _ = serde_json::to_writer(&mut head, &coll.name);
    let keys: Vec<Vec<u8>> = fields
        .iter()
        .map(|f| {
            f.map(|f| serde_json::to_vec(&f.name).unwrap_or_default())
                .unwrap_or_default()
        })
        .collect();
    for (n, row) in rows.rows.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&head);
        for (i, v) in row.iter().enumerate() {
            let Some(Some(f)) = fields.get(i) else {
                continue;
            };
            out.push(b',');
            out.extend_from_slice(&keys[i]);
            out.push(b':');
            write_value(f, v, out);
        }
        out.push(b'}');
    }
}

fn write_value(f: &basalt_core::schema::Field, v: &Value, out: &mut Vec<u8>) {
    use basalt_core::schema::ColumnKind;
    match (f.column_kind(), v) {
        // An opened pii value is its output JSON already (see `pii::open`).
        (_, Value::Json(s)) if f.pii.is_some() => out.extend_from_slice(s.as_bytes()),
        (ColumnKind::Json, Value::Text(s) | Value::Json(s)) if !s.is_empty() => {
            out.extend_from_slice(s.as_bytes())
        }
        (ColumnKind::Text, Value::Text(s)) => {
            let _ = serde_json::to_writer(&mut *out, s);
        }
        (_, v) => {
            let _ = serde_json::to_writer(&mut *out, &column_to_json(f, v.clone()));
        }
    }
}

/// Loads a record by id with no rule (internal use).
pub async fn load_record(ctx: &AppCtx, coll: &Collection, id: &str) -> ServiceResult<Option<Data>> {
    let rows = ctx.store.query(&by_id_sql(ctx, coll, id, None)).await?;
    Ok(rows_to_data(coll, opened(ctx, coll, rows))
        .into_iter()
        .next())
}

/// `SELECT` of one record by id, with the rule's condition when there is one.
fn by_id_sql(ctx: &AppCtx, coll: &Collection, id: &str, cond: Option<Sql>) -> Sql {
    let mut s = select_all(ctx, coll);
    s.push(" WHERE ")
        .push(MAIN)
        .push(".\"id\" = ")
        .bind(Value::Text(id.to_string()));
    if let Some(c) = cond {
        s.push(" AND (");
        s.append(c);
        s.push(")");
    }
    s.push(" LIMIT 1");
    s
}

pub use crate::state::rules_mention;

/// The collection a record write names, with the protocol's wording when unknown (`_totps` is never
/// served).
pub fn collection_for_write(ctx: &AppCtx, key: &str) -> ServiceResult<Arc<Collection>> {
    ctx.collection(key)
        .filter(|c| c.name != "_totps" && c.name != basalt_events::PII_AUDIT)
        .ok_or_else(|| {
            ServiceError(Error::NotFound(
                "Missing or invalid collection context.".into(),
            ))
        })
}

/// Records shaped for the viewer: output rules, then `expand` from the query.
pub async fn render(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    data: Vec<Data>,
    q: &Map<String, Json>,
    info: &RequestInfo,
) -> ServiceResult<Vec<Map<String, Json>>> {
    let mut out = Vec::with_capacity(data.len());
    let e = q.get("expand").and_then(Json::as_str).unwrap_or("");
    if e.is_empty() {
        for d in data {
            out.push(output(ctx, coll, d, info).await);
        }
        return Ok(out);
    }
    for d in &data {
        out.push(output(ctx, coll, d.clone(), info).await);
    }
    expand(ctx, coll, &mut out, &data, e, info).await?;
    Ok(out)
}

/// A successful answer's body with `?fields=` applied.
pub fn shape(q: &Map<String, Json>, mut v: Json) -> Json {
    if let Some(f) = q
        .get("fields")
        .and_then(Json::as_str)
        .filter(|f| !f.is_empty())
    {
        pick_fields(&mut v, f);
    }
    v
}

/// A rule as it applies to this caller: `None` means no condition (public or superuser).
pub fn rule_condition(
    ctx: &AppCtx,
    coll: &Collection,
    rule: &Option<String>,
    info: &RequestInfo,
) -> ServiceResult<Option<Sql>> {
    if info.is_superuser() {
        return Ok(None);
    }
    match rule {
        None => Err(forbidden(SUPERUSERS_ONLY)),
        Some(r) if r.trim().is_empty() => Ok(None),
        Some(r) => {
            let e = filter::parse(r)
                .map_err(|e| ServiceError(Error::internal(format!("stored rule: {e}"))))?;
            let began = std::time::Instant::now();
            let _span = tracing::debug_span!("rule.compile", collection = %coll.name).entered();
            let cols = ctx.collections();
            let mut c = Compiler::new(ctx.dialect(), cols.as_ref(), info, true);
            let sql = c.compile(coll, &e);
            ctx.metrics
                .rule_compile
                .observe(began.elapsed().as_secs_f64());
            Ok(Some(sql?))
        }
    }
}

/// A malformed filter or sort: 400 with the protocol's generic message; the detail goes to the log.
pub fn invalid_query(what: &str, detail: &str) -> ServiceError {
    tracing::debug!(what, detail, "rejected query");
    bad("Something went wrong while processing your request.")
}

/// A client's `filter` compiled for `coll` (bounded in cost for non-superusers), and how many
/// relation hops it joins.
pub fn client_filter(
    ctx: &AppCtx,
    coll: &Collection,
    f: &str,
    info: &RequestInfo,
) -> ServiceResult<(Option<Sql>, usize)> {
    if f.trim().is_empty() {
        return Ok((None, 0));
    }
    let e = filter::parse(f).map_err(|e| invalid_query("filter", &e.to_string()))?;
    let cols = ctx.collections();
    let mut c = Compiler::new(ctx.dialect(), cols.as_ref(), info, false);
    let s = c.compile(coll, &e).map_err(|e| match e {
        Error::BadRequest(m) => invalid_query("filter", &m),
        other => ServiceError(other),
    })?;
    Ok((Some(s), c.joins()))
}

pub struct ListParams {
    pub page: i64,
    pub per_page: i64,
    pub sort: String,
    pub filter: String,
    pub skip_total: bool,
    /// Who asks (see [`crate::request::Req::caller_key`]): a filter or sort that joins relations
    /// waits for this caller's turn in [`crate::limits::HeavyReads`].
    pub caller: String,
}

pub struct ListResult {
    /// The page's rows, as stored (pii sealed); see [`crate::pii::present_sealed`],
    /// [`crate::pii::open`], [`rows_to_data`] and [`write_rows_json`].
    pub rows: Rows,
    pub page: i64,
    pub per_page: i64,
    pub total_items: i64,
    pub total_pages: i64,
}

pub async fn list(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    p: &ListParams,
    info: &RequestInfo,
) -> ServiceResult<ListResult> {
    let rule = rule_condition(ctx, coll, &coll.list_rule, info)?;
    let (filt, filter_joins) = client_filter(ctx, coll, &p.filter, info)?;
    let sort: Vec<SortItem> =
        filter::parse_sort(&p.sort).map_err(|e| invalid_query("sort", &e.to_string()))?;
    let cols = ctx.collections();
    let mut comp = Compiler::new(ctx.dialect(), cols.as_ref(), info, false);
    let order = comp.order_by(coll, &sort).map_err(|e| match e {
        Error::BadRequest(m) => invalid_query("sort", &m),
        other => ServiceError(other),
    })?;
    let _turn = if filter_joins + comp.joins() > 0 && !info.is_superuser() {
        Some(
            ctx.heavy_reads
                .enter(&p.caller, info.auth.is_none())
                .await?,
        )
    } else {
        None
    };
    let mut where_ = ctx.sql();
    for (i, c) in [rule, filt].into_iter().flatten().enumerate() {
        where_.push(if i == 0 { " WHERE (" } else { " AND (" });
        where_.append(c);
        where_.push(")");
    }
    let mut q = select_all(ctx, coll);
    q.append(where_.clone());
    if !order.text.is_empty() {
        q.push(" ORDER BY ");
        q.append(order);
    }
    let offset = (p.page - 1).max(0).saturating_mul(p.per_page);
    q.push(" LIMIT ")
        .bind(Value::Int(p.per_page))
        .push(" OFFSET ")
        .bind(Value::Int(offset));
    // Sealed: the caller presents them (`pii::present_sealed`) or opens them (`pii::open`).
    let rows = ctx.store.query(&q).await?;
    let (total_items, total_pages) = if p.skip_total {
        (-1, -1)
    } else {
        let mut cq = ctx.sql();
        cq.push("SELECT COUNT(*) FROM ")
            .ident(&coll.name)
            .push(" AS ")
            .push(MAIN);
        cq.append(where_);
        let n = ctx.store.query(&cq).await?.scalar_int();
        (n, (n + p.per_page - 1) / p.per_page)
    };
    Ok(ListResult {
        rows,
        page: p.page,
        per_page: p.per_page,
        total_items,
        total_pages,
    })
}

/// Fetches one record under a rule: `Ok(None)` when missing or not allowed (both are 404).
pub async fn fetch_with_rule(
    ctx: &AppCtx,
    coll: &Collection,
    id: &str,
    rule: &Option<String>,
    info: &RequestInfo,
    tx: Option<&mut Box<dyn Tx>>,
) -> ServiceResult<Option<Data>> {
    let rows = fetch_rows_with_rule(ctx, coll, id, rule, info, tx).await?;
    Ok(rows_to_data(coll, rows).into_iter().next())
}

/// [`fetch_with_rule`] returning the stored row (zero or one) for [`write_rows_json`].
pub async fn fetch_rows_with_rule(
    ctx: &AppCtx,
    coll: &Collection,
    id: &str,
    rule: &Option<String>,
    info: &RequestInfo,
    tx: Option<&mut Box<dyn Tx>>,
) -> ServiceResult<Rows> {
    let s = by_id_sql(ctx, coll, id, rule_condition(ctx, coll, rule, info)?);
    let rows = match tx {
        Some(t) => t.query(&s).await?,
        None => ctx.store.query(&s).await?,
    };
    Ok(opened(ctx, coll, rows))
}

/// Whether rows of `coll` may be cached: base and auth collections (view collections have no
/// events), not the auth system collections (sessions and codes, written without events).
pub fn cacheable(coll: &Collection) -> bool {
    coll.kind != basalt_core::schema::CollectionType::View
        && (!coll.name.starts_with('_') || coll.is_superusers())
}

/// [`fetch_rows_with_rule`] for a plain read (`GET …/records/{id}`): served from the record cache
/// when the rule needs no query (an empty rule, or a superuser).
pub async fn fetch_rows_cached(
    ctx: &AppCtx,
    coll: &Collection,
    id: &str,
    rule: &Option<String>,
    info: &RequestInfo,
) -> ServiceResult<Arc<Rows>> {
    let rows = match rule_condition(ctx, coll, rule, info)? {
        None => cached_by_id(ctx, coll, id).await?,
        cond => Arc::new(ctx.store.query(&by_id_sql(ctx, coll, id, cond)).await?),
    };
    // As stored (sealed, as the cache holds them): the caller presents or opens them.
    Ok(rows)
}

/// [`load_record`] through the record cache (the auth record behind a token).
pub async fn load_record_cached(
    ctx: &AppCtx,
    coll: &Collection,
    id: &str,
) -> ServiceResult<Option<Data>> {
    let rows = cached_by_id(ctx, coll, id).await?;
    let rows = if crate::pii::has_pii(coll) {
        crate::pii::open_copy(ctx, coll, &rows)
    } else {
        Arc::unwrap_or_clone(rows)
    };
    Ok(rows_to_data(coll, rows).into_iter().next())
}

/// One record's stored row with no rule, from the cache when the collection may be cached.
async fn cached_by_id(ctx: &AppCtx, coll: &Collection, id: &str) -> ServiceResult<Arc<Rows>> {
    // The SQL is built only on a miss: a hit is the hot path.
    if !ctx.cache.enabled() || !cacheable(coll) {
        return Ok(Arc::new(
            ctx.store.query(&by_id_sql(ctx, coll, id, None)).await?,
        ));
    }
    match ctx.cache.get(&coll.id, &coll.updated, id).await {
        Ok(rows) => Ok(rows),
        Err(ticket) => {
            let rows = ctx.store.query(&by_id_sql(ctx, coll, id, None)).await?;
            ctx.cache.fill(ticket, &rows).await;
            Ok(Arc::new(rows))
        }
    }
}

/// Whether the caller matches the auth collection's manageRule for this record.
pub async fn is_manager(
    ctx: &AppCtx,
    coll: &Collection,
    id: &str,
    info: &RequestInfo,
) -> ServiceResult<bool> {
    is_manager_in(ctx, coll, id, info, None).await
}

async fn is_manager_in(
    ctx: &AppCtx,
    coll: &Collection,
    id: &str,
    info: &RequestInfo,
    tx: Option<&mut Box<dyn Tx>>,
) -> ServiceResult<bool> {
    if info.is_superuser() {
        return Ok(true);
    }
    let Some(rule) = coll.auth.as_ref().and_then(|a| a.manage_rule.clone()) else {
        return Ok(false);
    };
    if rule.trim().is_empty() || info.auth.is_none() {
        return Ok(false);
    }
    Ok(fetch_with_rule(ctx, coll, id, &Some(rule), info, tx)
        .await?
        .is_some())
}

/// Validates a body like [`record::prepare`], adding missing-relation errors found in the database
/// (through `tx` when given, so a batch sees its own writes) and upload errors, so the client sees
/// every field error at once.
async fn prepare_checked(
    ctx: &AppCtx,
    wctx: &WriteCtx<'_>,
    body: &Data,
    mut errs_in: FieldErrors,
    tx: Option<&mut Box<dyn Tx>>,
) -> ServiceResult<record::Prepared> {
    let (p, errs) = record::prepare_partial(wctx, body);
    for (k, v) in errs {
        errs_in.entry(k).or_insert(v);
    }
    let mut errs = errs_in;
    let rel_errs = relation_errors(ctx, &p.relations, tx).await?;
    for (k, v) in rel_errs {
        errs.entry(k).or_insert(v);
    }
    if !errs.is_empty() {
        let msg = if wctx.existing.is_none() {
            "Failed to create record."
        } else {
            "Failed to update record."
        };
        return Err(ServiceError(Error::validation(msg, errs)));
    }
    Ok(p)
}

async fn relation_errors(
    ctx: &AppCtx,
    rels: &[(String, String, Vec<String>)],
    mut tx: Option<&mut Box<dyn Tx>>,
) -> ServiceResult<FieldErrors> {
    let mut errs = FieldErrors::new();
    for (field, target, ids) in rels {
        let Some(tc) = ctx.collection(target) else {
            errs.insert(
                field.clone(),
                FieldError::new(
                    basalt_core::codes::MISSING_REL_RECORDS,
                    "Failed to find all relation records with the provided ids.",
                ),
            );
            continue;
        };
        let mut s = ctx.sql();
        s.push("SELECT COUNT(*) FROM ")
            .ident(&tc.name)
            .push(" WHERE \"id\" IN (");
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                s.push(", ");
            }
            s.bind(Value::Text(id.clone()));
        }
        s.push(")");
        let n = read(ctx, re(&mut tx), &s).await?.scalar_int() as usize;
        if n != ids.len() {
            errs.insert(
                field.clone(),
                FieldError::new(
                    basalt_core::codes::MISSING_REL_RECORDS,
                    "Failed to find all relation records with the provided ids.",
                ),
            );
        }
    }
    Ok(errs)
}

/// Reborrows an optional transaction.
pub fn re<'b>(tx: &'b mut Option<&mut Box<dyn Tx>>) -> Option<&'b mut Box<dyn Tx>> {
    tx.as_mut().map(|t| &mut **t)
}

/// A read through the transaction when there is one, else on the store.
async fn read(ctx: &AppCtx, tx: Option<&mut Box<dyn Tx>>, s: &Sql) -> ServiceResult<Rows> {
    Ok(match tx {
        Some(t) => t.query(s).await?,
        None => ctx.store.query(s).await?,
    })
}

/// What a write leaves to do once its transaction ended: storage effects, and (inside a batch) the
/// highest event sequence it appended.
#[derive(Default)]
pub struct WriteOut {
    pub files: FileOps,
    pub seq: i64,
    /// Records updated or deleted: (collection id, schema version, record id), dropped from the
    /// cache once the transaction committed, before the write is answered.
    pub touched: Vec<(String, String, String)>,
}

impl WriteOut {
    /// Settles the storage effects by the write's outcome.
    pub async fn finish<T>(self, ctx: &AppCtx, r: ServiceResult<T>) -> ServiceResult<T> {
        if r.is_ok() {
            ctx.cache.invalidate(&self.touched).await;
            self.files.committed(&ctx.files).await;
        } else {
            self.files.failed(&ctx.files).await;
        }
        r
    }
}

/// Keeps in each file field only names the record already holds or that are uploaded now (others are
/// dropped, as the protocol does), then stores the uploads still referenced and notes the replaced
/// files for deletion after the commit.
async fn store_files(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    existing: Option<&Data>,
    data: &mut Data,
    new: Vec<NewFile>,
    out: &mut FileOps,
) -> ServiceResult<()> {
    let id = data
        .get("id")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string();
    let mut to_store = Vec::new();
    let mut errs = FieldErrors::new();
    for f in coll.fields.iter().filter(|f| f.ty() == FieldType::File) {
        let before = crate::files::names(existing.and_then(|e| e.get(&f.name)));
        let fresh: Vec<&NewFile> = new.iter().filter(|n| n.field == f.name).collect();
        let (kept, invalid): (Vec<String>, Vec<String>) = crate::files::names(data.get(&f.name))
            .into_iter()
            .partition(|n| before.contains(n) || fresh.iter().any(|u| &u.name == n));
        if !invalid.is_empty() {
            errs.insert(
                f.name.clone(),
                FieldError::new(
                    basalt_core::codes::INVALID_FILE,
                    format!("Invalid new files: [{}].", invalid.join(" ")),
                )
                .with_params(serde_json::json!({ "invalidFiles": invalid })),
            );
            continue;
        }
        for b in &before {
            if !kept.contains(b) {
                out.obsolete_files
                    .push((coll.clone(), id.clone(), b.clone()));
            }
        }
        let v = if f.is_multiple() {
            Json::Array(kept.iter().cloned().map(Json::String).collect())
        } else {
            Json::String(kept.last().cloned().unwrap_or_default())
        };
        data.insert(f.name.clone(), v);
        to_store.extend(kept.iter().filter(|n| !before.contains(n)).cloned());
    }
    if !errs.is_empty() {
        let msg = if existing.is_none() {
            "Failed to create record."
        } else {
            "Failed to update record."
        };
        return Err(ServiceError(Error::validation(msg, errs)));
    }
    let st = ctx.files.storage();
    for n in new {
        if !to_store.contains(&n.name) {
            continue;
        }
        let key = crate::files::file_key(coll, &id, &n.name);
        st.put_file(&key, &n.upload.path).await.map_err(|e| {
            tracing::error!(error = %e, key = %key, "storing an upload failed");
            ServiceError(Error::internal(format!("file storage: {e}")))
        })?;
        out.stored.push(key);
    }
    Ok(())
}

/// The INSERT of one record, every field bound (pii fields sealed, see [`crate::pii::seal`]).
pub fn insert_sql(ctx: &AppCtx, coll: &Collection, data: &Data) -> ServiceResult<Sql> {
    let id = data.get("id").and_then(Json::as_str).unwrap_or("");
    let sealed = crate::pii::seal(ctx, coll, id, data, None, None)?;
    let extra = sealed.as_ref().map(|x| x.extra.as_slice()).unwrap_or(&[]);
    let mut s = ctx.sql();
    s.push("INSERT INTO ").ident(&coll.name).push(" (");
    for (i, f) in coll.fields.iter().enumerate() {
        if i > 0 {
            s.push(", ");
        }
        s.ident(&f.name);
    }
    for (c, _) in extra {
        s.push(", ").ident(c);
    }
    s.push(") VALUES (");
    for (i, f) in coll.fields.iter().enumerate() {
        if i > 0 {
            s.push(", ");
        }
        s.bind(column_value(coll, f, data, sealed.as_ref()));
    }
    for (_, v) in extra {
        s.push(", ").bind(Value::Text(v.clone()));
    }
    s.push(")");
    Ok(s)
}

/// The value bound for one field: its sealed text for a pii field, else the typed column value.
fn column_value(
    _coll: &Collection,
    f: &basalt_core::schema::Field,
    data: &Data,
    sealed: Option<&crate::pii::Sealed>,
) -> Value {
    if let Some(v) = sealed.and_then(|x| x.value(&f.name)) {
        return Value::Text(v.to_string());
    }
    let v = data
        .get(&f.name)
        .cloned()
        .unwrap_or_else(|| record::zero(f));
    json_to_column(f, &v)
}

/// The UPDATE of the named fields of one row (pii sealed with the record's key, which `data`
/// carries as read).
pub fn update_sql_of(
    ctx: &AppCtx,
    coll: &Collection,
    id: &str,
    data: &Data,
    fields: &[&str],
) -> ServiceResult<Sql> {
    update_columns_sql(ctx, coll, id, data, Some(fields))
}

/// The UPDATE of one row, every field but the id bound.
pub fn update_sql(ctx: &AppCtx, coll: &Collection, id: &str, data: &Data) -> ServiceResult<Sql> {
    update_columns_sql(ctx, coll, id, data, None)
}

/// `UPDATE` of the columns named in `only` (every column but `id` when `None`), from `data`.
fn update_columns_sql(
    ctx: &AppCtx,
    coll: &Collection,
    id: &str,
    data: &Data,
    only: Option<&[&str]>,
) -> ServiceResult<Sql> {
    let wrapped = data
        .get(basalt_core::pii::DEK_COLUMN)
        .and_then(Json::as_str);
    let sealed = crate::pii::seal(ctx, coll, id, data, only, wrapped)?;
    let all = sealed.as_ref().is_some_and(|x| x.all);
    let mut s = ctx.sql();
    s.push("UPDATE ").ident(&coll.name).push(" SET ");
    let mut first = true;
    for f in coll.fields.iter().filter(|f| {
        f.name != "id"
            && (only.is_none_or(|o| o.contains(&f.name.as_str())) || (all && f.pii.is_some()))
    }) {
        if !first {
            s.push(", ");
        }
        first = false;
        s.ident(&f.name)
            .push(" = ")
            .bind(column_value(coll, f, data, sealed.as_ref()));
    }
    for (c, v) in sealed.as_ref().map(|x| x.extra.as_slice()).unwrap_or(&[]) {
        if !first {
            s.push(", ");
        }
        first = false;
        s.ident(c).push(" = ").bind(Value::Text(v.clone()));
    }
    s.push(" WHERE \"id\" = ").bind(Value::Text(id.to_string()));
    Ok(s)
}

/// Creates a record from a body without uploads (see [`create_in`]).
pub async fn create(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    body: &Data,
    info: &RequestInfo,
) -> ServiceResult<Data> {
    create_with(ctx, coll, body, Vec::new(), info).await
}

/// [`create`] with uploads (file parts, or files the service fetched itself: OAuth2 avatars).
pub async fn create_with(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    body: &Data,
    uploads: Vec<Upload>,
    info: &RequestInfo,
) -> ServiceResult<Data> {
    let mut w = WriteOut::default();
    let r = create_in(ctx, coll, body, uploads, info, None, &mut w).await;
    w.finish(ctx, r).await
}

/// Resolves a body's `name:autogenerate` keys once for the whole write (each resolution generates
/// anew), in the body and in the rules' `@request.body` alike: a rule that reads the field sees the
/// value that is stored. `None` when the body has none.
fn pin_autogenerated(
    coll: &Collection,
    body: &Data,
    info: &RequestInfo,
) -> Option<(Data, RequestInfo)> {
    let pinned = record::resolve_autogenerate(coll, body)?;
    let mut i = info.clone();
    for f in &coll.fields {
        if i.body.remove(&format!("{}:autogenerate", f.name)).is_some() {
            match pinned.get(&f.name) {
                Some(v) => i.body.insert(f.name.clone(), v.clone()),
                None => i.body.remove(&f.name),
            };
        }
    }
    Some((pinned, i))
}

/// Creates a record: validate, store its uploads, insert, check createRule against the inserted row,
/// append its event. Commits when it owns the transaction (`outer` is `None`); inside a batch the
/// caller commits and settles `w`.
pub async fn create_in(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    body: &Data,
    uploads: Vec<Upload>,
    info: &RequestInfo,
    mut outer: Option<&mut Box<dyn Tx>>,
    w: &mut WriteOut,
) -> ServiceResult<Data> {
    if !info.is_superuser() && coll.create_rule.is_none() {
        return Err(forbidden(SUPERUSERS_ONLY));
    }
    if coll.is_superusers() && !info.is_superuser() {
        return Err(forbidden(SUPERUSERS_ONLY));
    }
    let pinned = pin_autogenerated(coll, body, info);
    let (body, info) = pinned.as_ref().map_or((body, info), |(b, i)| (b, i));
    // The createRule sees modifiers (`discount+`) resolved, as the write stores them.
    let resolved;
    let info = if info.body.keys().any(|k| record::is_modifier(k)) {
        let mut i = info.clone();
        i.body = record::resolve_modifiers(coll, None, &info.body).0;
        resolved = i;
        &resolved
    } else {
        info
    };
    let wctx = WriteCtx {
        coll,
        existing: None,
        is_manager: info.is_superuser(),
        is_superuser: info.is_superuser(),
    };
    let mut body = std::borrow::Cow::Borrowed(body);
    let mut errs = FieldErrors::new();
    let new = if uploads.is_empty() {
        Vec::new()
    } else {
        attach(coll, body.to_mut(), uploads, &mut errs)
    };
    let mut prepared = prepare_checked(ctx, &wctx, &body, errs, re(&mut outer)).await?;
    if let Some(pw) = prepared.new_password.take() {
        let h = crate::passwords::hash_password_blocking(pw).await?;
        prepared.data.insert("password".into(), Json::String(h));
    }
    if coll.is_auth() {
        let email = prepared
            .data
            .get("email")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        if !email.is_empty() && email_taken(ctx, coll, &email, None, re(&mut outer)).await? {
            let mut f = FieldErrors::new();
            f.insert(
                "email".into(),
                FieldError::new(basalt_core::codes::NOT_UNIQUE, "Value must be unique."),
            );
            return Err(ServiceError(Error::validation(
                "Failed to create record.",
                f,
            )));
        }
    }
    if coll.has_files() {
        store_files(ctx, coll, None, &mut prepared.data, new, &mut w.files).await?;
    }
    let mut own = None;
    let tx = match outer {
        Some(t) => t,
        None => own.insert(ctx.store.begin().await?),
    };
    pending_unique(
        ctx,
        tx,
        coll,
        &prepared.data,
        None,
        "Failed to create record.",
    )
    .await?;
    tx.execute(&insert_sql(ctx, coll, &prepared.data)?)
        .await
        .map_err(|e| unique_error(coll, e, "Failed to create record."))?;
    let id = prepared
        .data
        .get("id")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(Some(cond)) = (!info.is_superuser())
        .then(|| rule_condition(ctx, coll, &coll.create_rule, info))
        .transpose()?
    {
        let mut s = ctx.sql();
        s.push("SELECT 1 FROM ")
            .ident(&coll.name)
            .push(" AS ")
            .push(MAIN)
            .push(" WHERE ")
            .push(MAIN);
        s.push(".\"id\" = ")
            .bind(Value::Text(id.clone()))
            .push(" AND (");
        s.append(cond);
        s.push(")");
        if tx.query(&s).await?.rows.is_empty() {
            return Err(bad("Failed to create record."));
        }
    }
    let seq = emit(ctx, tx, coll, Action::Create, Some(&prepared.data), None).await?;
    settle(ctx, own, seq, w).await?;
    Ok(prepared.data)
}

/// Commits a transaction the write began itself and waits for its fan-out; inside a batch only
/// notes the sequence for the batch's commit.
async fn settle(
    ctx: &AppCtx,
    own: Option<Box<dyn Tx>>,
    seq: i64,
    w: &mut WriteOut,
) -> ServiceResult<()> {
    match own {
        Some(t) => {
            t.commit().await?;
            ctx.cache.invalidate(&std::mem::take(&mut w.touched)).await;
            ctx.committed(seq).await;
        }
        None => w.seq = w.seq.max(seq),
    }
    Ok(())
}

/// [`crate::pii::pending_unique_conflict`] as the protocol's unique error.
async fn pending_unique(
    ctx: &AppCtx,
    tx: &mut Box<dyn Tx>,
    coll: &Collection,
    data: &Data,
    written: Option<&[&str]>,
    msg: &str,
) -> ServiceResult<()> {
    if !crate::pii::has_pii(coll) {
        return Ok(());
    }
    if let Some(f) = crate::pii::pending_unique_conflict(ctx, tx, coll, data, written).await? {
        let mut e = FieldErrors::new();
        e.insert(
            f,
            FieldError::new(basalt_core::codes::NOT_UNIQUE, "Value must be unique."),
        );
        return Err(ServiceError(Error::validation(msg, e)));
    }
    Ok(())
}

fn unique_error(coll: &Collection, e: basalt_store::StoreError, msg: &str) -> ServiceError {
    match ServiceError::from(e) {
        ServiceError(Error::Validation { fields, .. }) => {
            // A unique pii field is enforced on its blind index column: name the field.
            let fields = fields
                .into_iter()
                .map(|(k, v)| {
                    let name = coll
                        .fields
                        .iter()
                        .find(|f| f.pii.is_some() && basalt_core::pii::index_column(f) == k)
                        .map(|f| f.name.clone())
                        .unwrap_or(k);
                    (name, v)
                })
                .collect();
            ServiceError(Error::validation(msg, fields))
        }
        other => other,
    }
}

async fn email_taken(
    ctx: &AppCtx,
    coll: &Collection,
    email: &str,
    except: Option<&str>,
    tx: Option<&mut Box<dyn Tx>>,
) -> ServiceResult<bool> {
    let mut s = ctx.sql();
    s.push("SELECT 1 FROM ").ident(&coll.name).push(" WHERE ");
    if let Some(f) = coll.field("email") {
        crate::pii::eq_condition(ctx, coll, f, email, &mut s)?;
    }
    if let Some(id) = except {
        s.push(" AND \"id\" != ").bind(Value::Text(id.into()));
    }
    s.push(" LIMIT 1");
    Ok(!read(ctx, tx, &s).await?.rows.is_empty())
}

/// Updates a record from a body without uploads (see [`update_in`]).
pub async fn update(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    id: &str,
    body: &Data,
    info: &RequestInfo,
) -> ServiceResult<Data> {
    let mut w = WriteOut::default();
    let r = update_in(ctx, coll, id, body, Vec::new(), info, None, &mut w).await;
    w.finish(ctx, r).await
}

/// Updates a record under updateRule (404 when it does not match); transactions as [`create_in`].
#[allow(clippy::too_many_arguments)]
pub async fn update_in(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    id: &str,
    body: &Data,
    uploads: Vec<Upload>,
    info: &RequestInfo,
    outer: Option<&mut Box<dyn Tx>>,
    w: &mut WriteOut,
) -> ServiceResult<Data> {
    if coll.is_superusers() && !info.is_superuser() {
        return Err(forbidden(SUPERUSERS_ONLY));
    }
    let pinned = pin_autogenerated(coll, body, info);
    let (body, info) = pinned.as_ref().map_or((body, info), |(b, i)| (b, i));
    // Read, check and write in one transaction: the row is locked first (PostgreSQL; SQLite has
    // one writer), so a concurrent update of the same record waits and then sees this one's result.
    let mut own = None;
    let tx: &mut Box<dyn Tx> = match outer {
        Some(t) => t,
        None => own.insert(ctx.store.begin().await?),
    };
    lock_row(ctx, tx, coll, id).await?;
    let mut outer = Some(tx);
    // `@request.body.x:changed` compares with the stored row, and the rule sees modifiers
    // (`credits+`) resolved against it, so both need the row before the rule runs.
    let modifiers = info.body.keys().any(|k| record::is_modifier(k));
    let with_existing;
    let info = if modifiers || rules_mention(coll, ":changed") {
        let mut i = info.clone();
        i.existing =
            fetch_with_rule(ctx, coll, id, &Some(String::new()), info, re(&mut outer)).await?;
        if modifiers {
            i.body = record::resolve_modifiers(coll, i.existing.as_ref(), &info.body).0;
        }
        with_existing = i;
        &with_existing
    } else {
        info
    };
    let existing = fetch_with_rule(ctx, coll, id, &coll.update_rule, info, re(&mut outer))
        .await?
        .ok_or_else(not_found)?;
    let manager = coll.is_auth() && is_manager_in(ctx, coll, id, info, re(&mut outer)).await?;
    let wctx = WriteCtx {
        coll,
        existing: Some(&existing),
        is_manager: manager || info.is_superuser(),
        is_superuser: info.is_superuser(),
    };
    let mut body = std::borrow::Cow::Borrowed(body);
    let mut errs = FieldErrors::new();
    let new = if uploads.is_empty() {
        Vec::new()
    } else {
        attach(coll, body.to_mut(), uploads, &mut errs)
    };
    let mut prepared = prepare_checked(ctx, &wctx, &body, errs, re(&mut outer)).await?;
    let mut rotate = false;
    if let Some(pw) = prepared.new_password.take() {
        if !wctx.is_manager {
            let old = body
                .get("oldPassword")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string();
            let hash = existing
                .get("password")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string();
            if !crate::passwords::verify_password_blocking(old, hash).await {
                let mut f = FieldErrors::new();
                f.insert(
                    "oldPassword".into(),
                    FieldError::new(
                        basalt_core::codes::INVALID_OLD_PASSWORD,
                        "Missing or invalid old password.",
                    ),
                );
                return Err(ServiceError(Error::validation(
                    "Failed to update record.",
                    f,
                )));
            }
        }
        let h = crate::passwords::hash_password_blocking(pw).await?;
        prepared.data.insert("password".into(), Json::String(h));
        rotate = true;
    }
    if coll.is_auth() {
        let new_email = prepared
            .data
            .get("email")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        if Some(new_email.as_str()) != existing.get("email").and_then(Json::as_str) {
            rotate = true;
            if !new_email.is_empty()
                && email_taken(ctx, coll, &new_email, Some(id), re(&mut outer)).await?
            {
                let mut f = FieldErrors::new();
                f.insert(
                    "email".into(),
                    FieldError::new(basalt_core::codes::NOT_UNIQUE, "Value must be unique."),
                );
                return Err(ServiceError(Error::validation(
                    "Failed to update record.",
                    f,
                )));
            }
        }
    }
    if rotate {
        prepared.data.insert(
            "tokenKey".into(),
            Json::String(basalt_core::id::random_id(50)),
        );
    }
    if coll.has_files() {
        store_files(
            ctx,
            coll,
            Some(&existing),
            &mut prepared.data,
            new,
            &mut w.files,
        )
        .await?;
    }
    let tx = outer
        .take()
        .ok_or_else(|| ServiceError(Error::internal("no transaction")))?;
    let seq = write_changes(ctx, coll, id, &prepared.data, &existing, tx, w).await?;
    settle(ctx, own, seq, w).await?;
    Ok(prepared.data)
}

/// Takes the row lock of `id` for the rest of the transaction (PostgreSQL `FOR UPDATE`); on SQLite
/// the transaction already holds the single writer.
pub(crate) async fn lock_row(
    ctx: &AppCtx,
    tx: &mut Box<dyn Tx>,
    coll: &Collection,
    id: &str,
) -> ServiceResult<()> {
    if ctx.dialect() == basalt_core::sql::Dialect::Postgres {
        let mut s = ctx.sql();
        s.push("SELECT 1 FROM ")
            .ident(&coll.name)
            .push(" WHERE \"id\" = ")
            .bind(Value::Text(id.to_string()))
            .push(" FOR UPDATE");
        tx.query(&s).await?;
    }
    Ok(())
}

/// Writes the columns whose value differs from `existing` (so concurrent updates of different
/// fields of one record both keep their values) and the event, whose `before` is `existing` as read
/// in this transaction.
async fn write_changes(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    id: &str,
    data: &Data,
    existing: &Data,
    tx: &mut Box<dyn Tx>,
    w: &mut WriteOut,
) -> ServiceResult<i64> {
    let changed: Vec<&str> = coll
        .fields
        .iter()
        .filter(|f| f.name != "id" && data.get(&f.name) != existing.get(&f.name))
        .map(|f| f.name.as_str())
        .collect();
    if !changed.is_empty() {
        // A pii write reuses the record's data key, which `existing` carries.
        let with_key;
        let data = match existing.get(basalt_core::pii::DEK_COLUMN) {
            Some(k) if !data.contains_key(basalt_core::pii::DEK_COLUMN) => {
                let mut d = data.clone();
                d.insert(basalt_core::pii::DEK_COLUMN.into(), k.clone());
                with_key = d;
                &with_key
            }
            _ => data,
        };
        pending_unique(
            ctx,
            tx,
            coll,
            data,
            Some(&changed),
            "Failed to update record.",
        )
        .await?;
        let n = tx
            .execute(&update_columns_sql(ctx, coll, id, data, Some(&changed))?)
            .await
            .map_err(|e| unique_error(coll, e, "Failed to update record."))?;
        if n == 0 {
            return Err(not_found());
        }
    }
    let seq = emit(ctx, tx, coll, Action::Update, Some(data), Some(existing)).await?;
    w.touched
        .push((coll.id.clone(), coll.updated.clone(), id.to_string()));
    Ok(seq)
}

/// A server-side change to a record (the auth flows: verified, password, email), outside any rule:
/// `changes` are merged into the stored row, which is written with its event in one transaction.
pub async fn system_update(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    id: &str,
    changes: Data,
) -> ServiceResult<Data> {
    let mut w = WriteOut::default();
    let r = async {
        let mut tx = ctx.store.begin().await?;
        lock_row(ctx, &mut tx, coll, id).await?;
        let existing = load_in_tx(ctx, &mut tx, coll, &[id.to_string()])
            .await?
            .into_iter()
            .next()
            .ok_or_else(not_found)?;
        let mut data = existing.clone();
        for (k, v) in changes {
            data.insert(k, v);
        }
        if coll.field("updated").is_some_and(|f| f.on_update) {
            data.insert("updated".into(), Json::String(basalt_core::time::now()));
        }
        let seq = write_changes(ctx, coll, id, &data, &existing, &mut tx, &mut w).await?;
        settle(ctx, Some(tx), seq, &mut w).await?;
        Ok(data)
    }
    .await;
    w.finish(ctx, r).await
}

/// Deletes a record (see [`delete_in`]); its files go after the commit.
pub async fn delete(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    id: &str,
    info: &RequestInfo,
) -> ServiceResult<()> {
    let mut w = WriteOut::default();
    let r = delete_in(ctx, coll, id, info, None, &mut w).await;
    w.finish(ctx, r).await
}

/// Deletes a record under deleteRule, then clears or cascades references to it, in one transaction;
/// the files of every deleted record are noted for deletion after the commit.
pub async fn delete_in(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    id: &str,
    info: &RequestInfo,
    mut outer: Option<&mut Box<dyn Tx>>,
    w: &mut WriteOut,
) -> ServiceResult<()> {
    if coll.is_superusers() && !info.is_superuser() {
        return Err(forbidden(SUPERUSERS_ONLY));
    }
    fetch_with_rule(ctx, coll, id, &coll.delete_rule, info, re(&mut outer))
        .await?
        .ok_or_else(not_found)?;
    let mut own = None;
    let tx = match outer {
        Some(t) => t,
        None => own.insert(ctx.store.begin().await?),
    };
    if coll.is_superusers() {
        let mut s = ctx.sql();
        s.push("SELECT COUNT(*) FROM \"_superusers\"");
        if tx.query(&s).await?.scalar_int() <= 1 {
            return Err(bad("You can't delete the only existing superuser."));
        }
    }
    // Events are appended after every row write of the cascade, as the transaction's last statements:
    // on PostgreSQL the append takes the outbox's shared lock, and no row lock is taken after it.
    let mut events = Vec::new();
    delete_in_tx(ctx, tx, coll, id, 0, &mut events).await?;
    let mut seq = 0;
    for ev in &events {
        seq = basalt_events::outbox::append(tx, ctx.dialect(), ev).await?;
        let schema = ctx
            .collection(&ev.collection_id)
            .map(|c| c.updated.clone())
            .unwrap_or_default();
        w.touched
            .push((ev.collection_id.clone(), schema, ev.record_id.clone()));
        if ev.action == Action::Delete
            && ctx
                .collection(&ev.collection_id)
                .is_some_and(|c| c.has_files())
        {
            w.files
                .obsolete_records
                .push((ev.collection_id.clone(), ev.record_id.clone()));
        }
    }
    settle(ctx, own, seq, w).await
}

fn delete_in_tx<'a>(
    ctx: &'a AppCtx,
    tx: &'a mut Box<dyn Tx>,
    coll: &'a Collection,
    id: &'a str,
    depth: usize,
    events: &'a mut Vec<basalt_events::Event>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ServiceResult<()>> + Send + 'a>> {
    Box::pin(async move {
        if depth > 16 {
            return Err(bad("Too deep cascade delete."));
        }
        let before = load_in_tx(ctx, tx, coll, &[id.to_string()]).await?;
        let mut s = ctx.sql();
        s.push("DELETE FROM ")
            .ident(&coll.name)
            .push(" WHERE \"id\" = ")
            .bind(Value::Text(id.to_string()));
        tx.execute(&s).await?;
        for b in &before {
            events.push(event(ctx, coll, Action::Delete, None, Some(b)));
        }
        if coll.is_auth() {
            // The record's external auths, MFA sessions, OTPs, origins and TOTP go with it.
            for t in crate::state::AUTH_SYSTEM {
                let mut d = ctx.sql();
                d.push("DELETE FROM ")
                    .ident(t)
                    .push(" WHERE \"collectionRef\" = ")
                    .bind(Value::Text(coll.id.clone()))
                    .push(" AND \"recordRef\" = ")
                    .bind(Value::Text(id.to_string()));
                tx.execute(&d).await?;
            }
        }
        let cols = ctx.collections();
        for other in &cols.list {
            for f in other
                .fields
                .iter()
                .filter(|f| f.ty() == FieldType::Relation && (f.collection_id == coll.id))
            {
                let col = ident(&f.name);
                // Find referencing rows.
                let mut q = ctx.sql();
                q.push("SELECT \"id\" FROM ")
                    .ident(&other.name)
                    .push(" AS ")
                    .push(MAIN)
                    .push(" WHERE ");
                refs_condition(ctx, &mut q, &col, f.is_multiple(), id);
                let ids: Vec<String> = tx
                    .query(&q)
                    .await?
                    .rows
                    .into_iter()
                    .filter_map(|r| r.into_iter().next())
                    .map(Value::into_string)
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                if f.cascade_delete {
                    for rid in ids {
                        delete_in_tx(ctx, tx, other, &rid, depth + 1, events).await?;
                    }
                    continue;
                }
                if f.required {
                    return Err(bad("The record cannot be deleted because it is part of a required reference in another record."));
                }
                let mut u = ctx.sql();
                u.push("UPDATE ")
                    .ident(&other.name)
                    .push(" SET ")
                    .push(&col)
                    .push(" = ");
                match (f.is_multiple(), ctx.dialect()) {
                    (false, _) => {
                        u.push("''");
                    }
                    (true, basalt_core::sql::Dialect::Sqlite) => {
                        u.push("(SELECT json_group_array(value) FROM json_each(")
                            .push(&col)
                            .push(") WHERE value != ");
                        u.bind(Value::Text(id.to_string())).push(")");
                    }
                    (true, basalt_core::sql::Dialect::Postgres) => {
                        u.push(&col).push(" - ").bind(Value::Text(id.to_string()));
                    }
                }
                u.push(" WHERE \"id\" IN (");
                for (i, rid) in ids.iter().enumerate() {
                    if i > 0 {
                        u.push(", ");
                    }
                    u.bind(Value::Text(rid.clone()));
                }
                u.push(")");
                let before = load_in_tx(ctx, tx, other, &ids).await?;
                tx.execute(&u).await?;
                let after = load_in_tx(ctx, tx, other, &ids).await?;
                for (b, a) in before.iter().zip(after.iter()) {
                    events.push(event(ctx, other, Action::Update, Some(a), Some(b)));
                }
            }
        }
        Ok(())
    })
}

fn refs_condition(ctx: &AppCtx, q: &mut Sql, col: &str, multi: bool, id: &str) {
    let qual = format!("{MAIN}.{col}");
    match (multi, ctx.dialect()) {
        (false, _) => {
            q.push(&qual).push(" = ").bind(Value::Text(id.to_string()));
        }
        (true, basalt_core::sql::Dialect::Sqlite) => {
            q.push("EXISTS (SELECT 1 FROM json_each(")
                .push(&qual)
                .push(") WHERE value = ")
                .bind(Value::Text(id.to_string()))
                .push(")");
        }
        (true, basalt_core::sql::Dialect::Postgres) => {
            q.push(&qual)
                .push(" @> jsonb_build_array(")
                .bind(Value::Text(id.to_string()))
                .push(")");
        }
    }
}

/// Expands relation paths into `expand`, each related collection's viewRule applied. Batched: one query
/// per path segment for all the records of the response (not one per record).
pub async fn expand(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    items: &mut [Map<String, Json>],
    raw: &[Data],
    paths: &str,
    info: &RequestInfo,
) -> ServiceResult<()> {
    let tree: Vec<Vec<String>> = paths
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.split('.').map(str::to_string).collect::<Vec<_>>())
        .filter(|segs| segs.len() <= 6)
        .collect();
    if tree.is_empty() {
        return Ok(());
    }
    // Related viewRules see `@request.context = "expand"`, as the protocol defines.
    let mut info = info.clone();
    info.context = "expand".into();
    expand_batch(ctx, coll, items, raw, &tree, &info, 0).await
}

fn expand_batch<'a>(
    ctx: &'a AppCtx,
    coll: &'a Arc<Collection>,
    items: &'a mut [Map<String, Json>],
    raws: &'a [Data],
    paths: &'a [Vec<String>],
    info: &'a RequestInfo,
    depth: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ServiceResult<()>> + Send + 'a>> {
    Box::pin(async move {
        let mut firsts: Vec<&str> = vec![];
        for p in paths {
            if let Some(f) = p.first() {
                if !firsts.contains(&f.as_str()) {
                    firsts.push(f);
                }
            }
        }
        let su = info.is_superuser();
        let mut objs: Vec<Map<String, Json>> = items
            .iter()
            .map(|i| {
                i.get("expand")
                    .and_then(Json::as_object)
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        let mut any_valid = vec![false; items.len()];
        for first in firsts {
            let rest: Vec<Vec<String>> = paths
                .iter()
                .filter(|p| p[0] == first && p.len() > 1)
                .map(|p| p[1..].to_vec())
                .collect();
            // Per response record: the related ids, in relation order; then one fetch for all of them.
            let (target, per_item, multi) = if let Some(f) = coll
                .field(first)
                .filter(|f| f.ty() == FieldType::Relation && (su || !f.hidden))
            {
                let Some(target) = ctx.collection(&f.collection_id) else {
                    continue;
                };
                let per_item: Vec<Vec<String>> = raws
                    .iter()
                    .map(|d| match d.get(first) {
                        Some(Json::Array(a)) => a
                            .iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect(),
                        Some(Json::String(s)) if !s.is_empty() => vec![s.clone()],
                        _ => vec![],
                    })
                    .collect();
                for (i, ids) in per_item.iter().enumerate() {
                    // An empty relation still yields `"expand": {}`, as the protocol answers.
                    any_valid[i] |= ids.is_empty();
                }
                (target, Target::Forward(per_item), f.is_multiple())
            } else if let Some((other, via)) = first.split_once("_via_") {
                let Some(target) = ctx.collection(other) else {
                    continue;
                };
                let Some(rf) = target
                    .field(via)
                    .filter(|f| {
                        f.ty() == FieldType::Relation
                            && f.collection_id == coll.id
                            && (su || !f.hidden)
                    })
                    .cloned()
                else {
                    continue;
                };
                (target, Target::Back(Box::new(rf)), true)
            } else {
                continue;
            };
            let recs = match &per_item {
                Target::Forward(per_item) => {
                    let mut seen = std::collections::HashSet::new();
                    let all: Vec<String> = per_item
                        .iter()
                        .flatten()
                        .filter(|id| seen.insert(id.as_str()))
                        .cloned()
                        .collect();
                    if all.is_empty() {
                        continue;
                    }
                    fetch_many(ctx, &target, &all, info).await?
                }
                Target::Back(rf) => {
                    let mine: Vec<String> = raws.iter().map(|d| id_of(d).to_string()).collect();
                    fetch_back(ctx, &target, rf, &mine, info).await?
                }
            };
            if recs.is_empty() {
                continue;
            }
            let mut outs = Vec::with_capacity(recs.len());
            for r in &recs {
                outs.push(output(ctx, &target, r.clone(), info).await);
            }
            if !rest.is_empty() && depth < 6 {
                expand_batch(ctx, &target, &mut outs, &recs, &rest, info, depth + 1).await?;
            }
            let by_id: std::collections::HashMap<&str, usize> = recs
                .iter()
                .enumerate()
                .map(|(k, r)| (id_of(r), k))
                .collect();
            for (i, raw) in raws.iter().enumerate() {
                let picked: Vec<Json> = match &per_item {
                    Target::Forward(per_item) => per_item[i]
                        .iter()
                        .filter_map(|id| {
                            by_id
                                .get(id.as_str())
                                .map(|k| Json::Object(outs[*k].clone()))
                        })
                        .collect(),
                    Target::Back(rf) => {
                        let me = id_of(raw);
                        recs.iter()
                            .zip(outs.iter())
                            .filter(|(r, _)| match r.get(&rf.name) {
                                Some(Json::Array(a)) => a.iter().any(|x| x.as_str() == Some(me)),
                                Some(Json::String(s)) => s == me,
                                _ => false,
                            })
                            .take(1000)
                            .map(|(_, o)| Json::Object(o.clone()))
                            .collect()
                    }
                };
                if picked.is_empty() {
                    continue;
                }
                let v = if multi {
                    Json::Array(picked)
                } else {
                    picked.into_iter().next().unwrap_or(Json::Null)
                };
                objs[i].insert(first.to_string(), v);
            }
        }
        for ((item, obj), valid) in items.iter_mut().zip(objs).zip(any_valid) {
            if !obj.is_empty() || valid {
                item.insert("expand".into(), Json::Object(obj));
            }
        }
        Ok(())
    })
}

/// What an expand segment follows: a relation field of the record (related ids per record), or a
/// relation field of another collection pointing back at it.
enum Target {
    Forward(Vec<Vec<String>>),
    Back(Box<basalt_core::schema::Field>),
}

async fn fetch_many(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    ids: &[String],
    info: &RequestInfo,
) -> ServiceResult<Vec<Data>> {
    let cond = match rule_condition(ctx, coll, &coll.view_rule, info) {
        Ok(c) => c,
        Err(_) => return Ok(vec![]),
    };
    let mut s = select_all(ctx, coll);
    s.push(" WHERE ")
        .push(MAIN)
        .push(".\"id\" IN ")
        .append(id_set(ctx, ids));
    if let Some(c) = cond {
        s.push(" AND (");
        s.append(c);
        s.push(")");
    }
    Ok(rows_to_data(
        coll,
        opened(ctx, coll, ctx.store.query(&s).await?),
    ))
}

/// `(SELECT value FROM <the ids as one bound JSON array>)`: any number of ids in one parameter, so
/// large expands stay under the drivers' parameter limits and reuse one prepared statement.
fn id_set(ctx: &AppCtx, ids: &[String]) -> Sql {
    let arr = Value::Json(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()));
    let mut s = ctx.sql();
    match ctx.dialect() {
        basalt_core::sql::Dialect::Sqlite => {
            s.push("(SELECT value FROM json_each(").bind(arr).push("))");
        }
        basalt_core::sql::Dialect::Postgres => {
            s.push("(SELECT jsonb_array_elements_text(")
                .bind(arr)
                .push("))");
        }
    }
    s
}

/// Records of `coll` whose relation field `rf` points at any of `ids`, under its viewRule.
async fn fetch_back(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    rf: &basalt_core::schema::Field,
    ids: &[String],
    info: &RequestInfo,
) -> ServiceResult<Vec<Data>> {
    let cond = match rule_condition(ctx, coll, &coll.view_rule, info) {
        Ok(c) => c,
        Err(_) => return Ok(vec![]),
    };
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let col = format!("{MAIN}.{}", ident(&rf.name));
    let query = |ids: &[String], limit: i64| {
        let mut s = select_all(ctx, coll);
        s.push(" WHERE ");
        match (rf.is_multiple(), ctx.dialect()) {
            (false, _) => {
                s.push(&col).push(" IN ").append(id_set(ctx, ids));
            }
            (true, basalt_core::sql::Dialect::Sqlite) => {
                s.push("EXISTS (SELECT 1 FROM json_each(")
                    .push(&col)
                    .push(") WHERE value IN ");
                s.append(id_set(ctx, ids)).push(")");
            }
            (true, basalt_core::sql::Dialect::Postgres) => {
                s.push("EXISTS (SELECT 1 FROM jsonb_array_elements_text(")
                    .push(&col);
                s.push(") AS _v(value) WHERE _v.value IN ")
                    .append(id_set(ctx, ids))
                    .push(")");
            }
        }
        if let Some(c) = cond.clone() {
            s.push(" AND (");
            s.append(c);
            s.push(")");
        }
        s.push(" LIMIT ").bind(Value::Int(limit));
        s
    };
    // One query for the whole batch; if it reaches the cap, some parent may have been starved of its
    // (up to) 1000, so fall back to one query per parent.
    let cap = (ids.len() * 1000).min(100_000) as i64;
    let rows = opened(ctx, coll, ctx.store.query(&query(ids, cap)).await?);
    if (rows.rows.len() as i64) < cap {
        return Ok(rows_to_data(coll, rows));
    }
    let mut out = vec![];
    for id in ids {
        let one = [id.clone()];
        out.extend(rows_to_data(
            coll,
            opened(ctx, coll, ctx.store.query(&query(&one, 1000)).await?),
        ));
    }
    Ok(out)
}

/// Records of `coll` with the given ids under its viewRule, as stored rows opened (one statement for
/// any number of ids; missing and invisible ids are simply absent). A denied rule is an empty answer,
/// as in expand.
pub async fn related(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    ids: &[String],
    info: &RequestInfo,
) -> ServiceResult<Vec<Data>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    fetch_many(ctx, coll, ids, info).await
}

/// What [`back_list`] reads for each parent: a client filter and sort, and at most `per_parent`
/// records.
pub struct BackParams<'a> {
    pub filter: &'a str,
    pub sort: &'a str,
    pub per_parent: i64,
    /// See [`ListParams::caller`].
    pub caller: &'a str,
}

/// Records of `coll` whose relation field `rf` points at any of `parents`, as a list: its listRule,
/// the caller's filter and sort, at most `per_parent` per parent; one statement for all parents (a
/// window numbering each parent's records). Each record comes with the parent it was listed under (a
/// record pointing at several parents comes once per parent).
pub async fn back_list(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    rf: &basalt_core::schema::Field,
    parents: &[String],
    p: &BackParams<'_>,
    info: &RequestInfo,
) -> ServiceResult<Vec<(String, Data)>> {
    if parents.is_empty() || p.per_parent < 1 {
        return Ok(vec![]);
    }
    let rule = match rule_condition(ctx, coll, &coll.list_rule, info) {
        Ok(c) => c,
        Err(_) => return Ok(vec![]),
    };
    let (filt, filter_joins) = client_filter(ctx, coll, p.filter, info)?;
    let sort: Vec<SortItem> =
        filter::parse_sort(p.sort).map_err(|e| invalid_query("sort", &e.to_string()))?;
    let cols = ctx.collections();
    let mut comp = Compiler::new(ctx.dialect(), cols.as_ref(), info, false);
    let order = comp.order_by(coll, &sort).map_err(|e| match e {
        Error::BadRequest(m) => invalid_query("sort", &m),
        other => ServiceError(other),
    })?;
    let _turn = if filter_joins + comp.joins() > 0 && !info.is_superuser() {
        Some(ctx.heavy_reads.enter(p.caller, info.auth.is_none()).await?)
    } else {
        None
    };
    // The parent key: the relation column, or each element of a multiple relation's array.
    let col = format!("{MAIN}.{}", ident(&rf.name));
    let (from_extra, key) = match (rf.is_multiple(), ctx.dialect()) {
        (false, _) => (String::new(), col.clone()),
        (true, basalt_core::sql::Dialect::Sqlite) => (
            format!(", json_each({col}) AS _gk"),
            "_gk.value".to_string(),
        ),
        (true, basalt_core::sql::Dialect::Postgres) => (
            format!(" CROSS JOIN LATERAL jsonb_array_elements_text({col}) AS _gk(value)"),
            "_gk.value".to_string(),
        ),
    };
    // The columns `select_all` reads, each record's parent and its number within that parent.
    let mut q = ctx.sql();
    q.push("SELECT * FROM (SELECT ");
    for f in &coll.fields {
        q.push(MAIN).push(".").ident(&f.name).push(", ");
    }
    if crate::pii::has_pii(coll) {
        q.push(MAIN)
            .push(".")
            .ident(basalt_core::pii::DEK_COLUMN)
            .push(", ");
    }
    q.push(&key)
        .push(" AS _gq_parent, ROW_NUMBER() OVER (PARTITION BY ");
    q.push(&key);
    if !order.text.is_empty() {
        q.push(" ORDER BY ");
        q.append(order);
    }
    q.push(") AS _gq_rn FROM ")
        .ident(&coll.name)
        .push(" AS ")
        .push(MAIN)
        .push(from_extra.as_str())
        .push(" WHERE ")
        .push(&key)
        .push(" IN ")
        .append(id_set(ctx, parents));
    for c in [rule, filt].into_iter().flatten() {
        q.push(" AND (");
        q.append(c);
        q.push(")");
    }
    q.push(") AS _gb WHERE _gb._gq_rn <= ")
        .bind(Value::Int(p.per_parent))
        .push(" ORDER BY _gb._gq_parent, _gb._gq_rn");
    let rows = ctx.store.query(&q).await?;
    let at = rows.col("_gq_parent");
    let parents_of: Vec<String> = rows
        .rows
        .iter()
        .map(|r| {
            at.map(|i| r[i].as_str().unwrap_or("").to_string())
                .unwrap_or_default()
        })
        .collect();
    let data = rows_to_data(coll, opened(ctx, coll, rows));
    Ok(parents_of.into_iter().zip(data).collect())
}

/// Record JSON for this viewer: hidden fields for superusers; email for self, superusers and managers.
pub async fn output(
    ctx: &AppCtx,
    coll: &Collection,
    data: Data,
    info: &RequestInfo,
) -> Map<String, Json> {
    let su = info.is_superuser();
    let mut show_email = su;
    if coll.is_auth() && !show_email {
        let me = info
            .auth
            .as_ref()
            .and_then(|(c, r)| (c.id == coll.id).then(|| r.get("id").cloned()).flatten());
        show_email = me.is_some() && me.as_ref() == data.get("id");
        if !show_email && info.auth.is_some() {
            let id = data.get("id").and_then(Json::as_str).unwrap_or("");
            show_email = is_manager(ctx, coll, id, info).await.unwrap_or(false);
        }
    }
    let mut data = data;
    if crate::pii::has_pii(coll) {
        if let Err(e) = crate::pii::present_data(ctx, coll, &mut data, info).await {
            // Deciding failed (a store error): mask everything rather than reveal.
            tracing::warn!(error = %e.0, "pii reveal check failed; masking");
            crate::pii::mask_event(ctx, coll, &mut data);
        }
    }
    record::to_output(coll, data, su, show_email)
}

/// Applies the `fields` query parameter to a JSON object (dot paths, `*`, `:excerpt(n,bool)`).
pub fn pick_fields(v: &mut Json, fields: &str) {
    let list: Vec<&str> = split_top_level(fields)
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        return;
    }
    let paths: Vec<Vec<&str>> = list.iter().map(|p| p.split('.').collect()).collect();
    apply_paths(v, &paths);
}

fn apply_paths(v: &mut Json, paths: &[Vec<&str>]) {
    match v {
        Json::Array(a) => {
            for x in a {
                apply_paths(x, paths);
            }
        }
        Json::Object(o) => {
            let mut keep = Map::new();
            let star = paths
                .iter()
                .any(|p| p.len() == 1 && (p[0] == "*" || p[0].starts_with("*:")));
            for (k, val) in std::mem::take(o) {
                let mut matched = star;
                let mut sub: Vec<Vec<&str>> = vec![];
                let mut excerpt: Option<(usize, bool)> = None;
                for p in paths {
                    let (name, modifier) = p[0]
                        .split_once(':')
                        .map(|(a, b)| (a, Some(b)))
                        .unwrap_or((p[0], None));
                    if name == k || name == "*" {
                        if p.len() == 1 {
                            matched = true;
                            if let Some(m) = modifier.and_then(parse_excerpt) {
                                excerpt = Some(m);
                            }
                        } else {
                            sub.push(p[1..].to_vec());
                        }
                    }
                }
                if !sub.is_empty() {
                    // A nested pick (`expand.author.name`) narrows the value even under `*`.
                    let mut val = val;
                    apply_paths(&mut val, &sub);
                    keep.insert(k, val);
                } else if matched {
                    let mut val = val;
                    if let (Some((n, ell)), Json::String(s)) = (excerpt, &val) {
                        val = Json::String(excerpt_text(s, n, ell));
                    }
                    keep.insert(k, val);
                }
            }
            *o = keep;
        }
        _ => {}
    }
}

/// Splits on commas outside parentheses (`title:excerpt(5,true),id`).
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = vec![];
    let mut depth = 0i32;
    let mut start = 0;
    for (i, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth <= 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_excerpt(m: &str) -> Option<(usize, bool)> {
    let inner = m.strip_prefix("excerpt(")?.strip_suffix(')')?;
    let mut it = inner.split(',');
    let n = it.next()?.trim().parse().ok()?;
    let ell = it.next().map(|s| s.trim() == "true").unwrap_or(false);
    Some((n, ell))
}

fn excerpt_text(s: &str, n: usize, ellipsis: bool) -> String {
    let mut plain = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                plain.push(' ');
            }
            _ if !in_tag => plain.push(c),
            _ => {}
        }
    }
    let plain = plain.split_whitespace().collect::<Vec<_>>().join(" ");
    if plain.chars().count() <= n {
        return plain;
    }
    let mut out: String = plain.chars().take(n).collect();
    if ellipsis {
        out.push_str("...");
    }
    out
}

/// Rows by id inside a transaction, in id order.
pub async fn load_in_tx(
    ctx: &AppCtx,
    tx: &mut Box<dyn Tx>,
    coll: &Collection,
    ids: &[String],
) -> ServiceResult<Vec<Data>> {
    let mut s = select_all(ctx, coll);
    s.push(" WHERE ").push(MAIN).push(".\"id\" IN (");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(", ");
        }
        s.bind(Value::Text(id.clone()));
    }
    s.push(") ORDER BY ").push(MAIN).push(".\"id\"");
    Ok(rows_to_data(coll, opened(ctx, coll, tx.query(&s).await?)))
}

/// A record as events carry it: every field, secrets (password hashes, token keys) removed.
fn event_record(ctx: &AppCtx, coll: &Collection, data: &Data) -> Data {
    let mut d = Data::new();
    for f in &coll.fields {
        if f.ty() == FieldType::Password || (coll.is_auth() && f.name == "tokenKey") {
            continue;
        }
        let v = data
            .get(&f.name)
            .cloned()
            .unwrap_or_else(|| record::zero(f));
        d.insert(f.name.clone(), v);
    }
    crate::pii::mask_event(ctx, coll, &mut d);
    d
}

/// The event of one change.
fn event(
    ctx: &AppCtx,
    coll: &Collection,
    action: Action,
    after: Option<&Data>,
    before: Option<&Data>,
) -> basalt_events::Event {
    let id = after
        .or(before)
        .and_then(|d| d.get("id"))
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string();
    let mut ev = basalt_events::Event::new(
        action,
        &coll.id,
        &coll.name,
        &id,
        after.map(|d| event_record(ctx, coll, d)),
        before.map(|d| event_record(ctx, coll, d)),
    );
    ev.sealed = crate::pii::seal_event(ctx, coll, &ev, after, before);
    ev.traceparent = crate::trace::current_traceparent();
    ev
}

/// Appends the change's event to the outbox, in the change's transaction (its last statement).
pub(crate) async fn emit(
    ctx: &AppCtx,
    tx: &mut Box<dyn Tx>,
    coll: &Collection,
    action: Action,
    after: Option<&Data>,
    before: Option<&Data>,
) -> ServiceResult<i64> {
    emit_sealed(ctx, tx, coll, action, after, before, true).await
}

/// [`emit`], with `seal` false for a change whose values must not reach any sink (an erasure's
/// event: its `before` is what was erased).
pub(crate) async fn emit_sealed(
    ctx: &AppCtx,
    tx: &mut Box<dyn Tx>,
    coll: &Collection,
    action: Action,
    after: Option<&Data>,
    before: Option<&Data>,
    seal: bool,
) -> ServiceResult<i64> {
    let mut ev = event(ctx, coll, action, after, before);
    if !seal {
        ev.sealed = None;
    }
    Ok(basalt_events::outbox::append(tx, ctx.dialect(), &ev).await?)
}

/// Whether a record snapshot (not the live row) satisfies every condition: the conditions run against
/// a one-row derived table named like the collection's alias, so relation paths still join.
pub async fn snapshot_matches(
    ctx: &AppCtx,
    coll: &Collection,
    record: &Data,
    conds: Vec<Sql>,
) -> ServiceResult<bool> {
    use basalt_core::sql::Dialect;
    let mut s = ctx.sql();
    s.push("SELECT 1 FROM (SELECT ");
    for (i, f) in coll.fields.iter().enumerate() {
        if i > 0 {
            s.push(", ");
        }
        let v = match record.get(&f.name) {
            Some(v) => json_to_column(f, v),
            None => json_to_column(f, &record::zero(f)),
        };
        match (ctx.dialect(), &v) {
            (Dialect::Postgres, Value::Null) => {
                s.push("NULL::jsonb");
            }
            (Dialect::Postgres, Value::Text(_)) => {
                s.bind(v).push(" COLLATE \"C\"");
            }
            _ => {
                s.bind(v);
            }
        }
        s.push(" AS ").ident(&f.name);
    }
    // Blind indexes of the snapshot's pii values, so rules and filters comparing them work as on the
    // table.
    if let Some(ring) = ctx.pii.as_ref().filter(|_| crate::pii::has_pii(coll)) {
        for f in basalt_core::pii::fields(&coll.fields)
            .filter(|f| f.pii.as_ref().is_some_and(|p| p.searchable))
        {
            let bi = record
                .get(&f.name)
                .and_then(|v| basalt_core::pii::canonical(f, v))
                .map(|t| ring.index(&coll.id, &f.id, &t))
                .unwrap_or_default();
            s.push(", ").bind(Value::Text(bi));
            if ctx.dialect() == Dialect::Postgres {
                s.push(" COLLATE \"C\"");
            }
            s.push(" AS ").ident(&basalt_core::pii::index_column(f));
        }
    }
    s.push(") AS ").push(MAIN).push(" WHERE ");
    for (i, c) in conds.into_iter().enumerate() {
        if i > 0 {
            s.push(" AND ");
        }
        s.push("(");
        s.append(c);
        s.push(")");
    }
    Ok(!ctx.store.query(&s).await?.rows.is_empty())
}
