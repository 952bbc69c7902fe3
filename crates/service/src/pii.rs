//! PII protection in the one read and write path (issue #16; the ciphers are [`crate::keyring`]).
//!
//! - **Write** ([`seal`]): a record's pii values are encrypted under its own data key before the
//!   row is written; the key is stored wrapped in the row's `_pii` column; a searchable field also
//!   stores its blind index (`_bi_<field id>`). An empty value is stored as `''` (nothing to hide).
//! - **Read, inside the server** ([`open`]): every record read through `records` is decrypted right
//!   after the query (the cache holds the sealed rows), so rules, the write path, the auth flows and
//!   mail see plaintext, exactly as without PII.
//! - **Read, leaving the server** ([`present_sealed`] on the fast path, [`present_data`] in
//!   `records::output`): each pii value is replaced by
//!   its mask unless the caller passes the field's `revealRule` (superusers do, unless
//!   `[pii] require_reason` asks them for an `X-Pii-Reason` header). Every value revealed is audited
//!   ([`crate::audit`]): who, which record and fields, the route, never the value.
//! - **Events** carry masks ([`mask_event`]): the outbox, webhooks, Kafka, NATS and RabbitMQ never
//!   hold plaintext.
//!
//! This module is the codec `records` calls on every read and write; the operations built on top
//! (erasure, export, rotation, the audit writer) are `privacy`.

use std::collections::HashSet;
use std::sync::Arc;

use basalt_core::filter::compile::{RequestInfo, MAIN};
use basalt_core::pii::{canonical, index_column, Mask, DEK_COLUMN};
use basalt_core::record::Data;
use basalt_core::schema::{Collection, ColumnKind, Field, FieldType};
use basalt_core::sql::Value;
use basalt_core::Error;
use basalt_store::Rows;
use serde_json::Value as Json;

use crate::error::{ServiceError, ServiceResult};
use crate::keyring::{KeyRing, RecordKey};
use crate::AppCtx;

pub fn has_pii(coll: &Collection) -> bool {
    coll.fields.iter().any(|f| f.pii.is_some())
}

pub fn ring(ctx: &AppCtx) -> ServiceResult<&Arc<KeyRing>> {
    ctx.pii.as_ref().ok_or_else(|| {
        ServiceError(Error::BadRequest(
            "This collection has pii fields and the server has no PII keys: set BASALT_PII_KEYS or [pii] keys_file.".into(),
        ))
    })
}

/// The plaintext of a value as sealed: strings as they are, numbers and JSON as JSON text.
fn plain_text(f: &Field, v: &Json) -> Option<String> {
    match v {
        Json::Null => None,
        Json::String(s) if s.is_empty() => None,
        Json::String(s) if f.column_kind() != ColumnKind::Json => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The output JSON of a decrypted value (the inverse of [`plain_text`]).
fn plain_json(f: &Field, text: &str) -> Json {
    match f.ty() {
        FieldType::Number | FieldType::Json => serde_json::from_str(text).unwrap_or(Json::Null),
        _ => Json::String(text.to_string()),
    }
}

/// What a write stores for its pii fields: the sealed value of each field written, and the hidden
/// columns (`_pii`, `_bi_*`) to set.
#[derive(Default)]
pub struct Sealed {
    pub values: Vec<(String, String)>,
    pub extra: Vec<(String, String)>,
    /// Every pii field must be written (a new data key: the old values no longer decrypt).
    pub all: bool,
}

impl Sealed {
    pub fn value(&self, field: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == field)
            .map(|(_, v)| v.as_str())
    }
}

/// Seals `data`'s pii fields for record `id`. `written`: the fields an update writes (`None`: an
/// insert, every field); `wrapped`: the record's stored data key (updates). An update keeps the data
/// key (unwritten values stay readable) and rewraps it under the primary key when another key
/// wrapped it, then re-indexes every searchable field under the primary too; a record whose key is
/// gone (erased) gets a new one and every pii field is rewritten from `data`.
pub fn seal(
    ctx: &AppCtx,
    coll: &Collection,
    id: &str,
    data: &Data,
    written: Option<&[&str]>,
    wrapped: Option<&str>,
) -> ServiceResult<Option<Sealed>> {
    if !has_pii(coll) {
        return Ok(None);
    }
    let ring = ring(ctx)?;
    let mut out = Sealed::default();
    let existing = wrapped
        .filter(|w| !w.is_empty())
        .and_then(|w| ring.unwrap(w, &coll.id, id).map(|k| (k, w)));
    let (dek, rewrap) = match existing {
        Some((k, w)) => (k, KeyRing::wrapped_by(w) != Some(ring.primary_id())),
        None => {
            out.all = true;
            (KeyRing::new_dek(), true)
        }
    };
    if rewrap {
        out.extra
            .push((DEK_COLUMN.to_string(), ring.wrap(&dek, &coll.id, id)));
    }
    let rk = RecordKey::new(&dek, &coll.id, id);
    for f in basalt_core::pii::fields(&coll.fields) {
        let write = out.all || written.is_none_or(|w| w.contains(&f.name.as_str()));
        let v = data.get(&f.name).cloned().unwrap_or(Json::Null);
        if f.pii.as_ref().is_some_and(|p| p.decrypting) {
            // pii is being removed from it: stored in clear, no blind index.
            if write {
                out.values
                    .push((f.name.clone(), plain_text(f, &v).unwrap_or_default()));
                if f.pii.as_ref().is_some_and(|p| p.searchable) {
                    out.extra.push((index_column(f), String::new()));
                }
            }
            continue;
        }
        if write {
            let stored = plain_text(f, &v)
                .map(|p| rk.seal(&f.id, &p))
                .unwrap_or_default();
            out.values.push((f.name.clone(), stored));
        }
        if f.pii.as_ref().is_some_and(|p| p.searchable) && (write || rewrap) {
            let bi = canonical(f, &v)
                .map(|t| ring.index(&coll.id, &f.id, &t))
                .unwrap_or_default();
            out.extra.push((index_column(f), bi));
        }
    }
    Ok(Some(out))
}

/// Decrypts the pii columns of rows read from `coll`'s table, in place: each becomes
/// `Value::Json(<the value's JSON>)` (what `column_to_json` reads back), `null` when it does not
/// decrypt (an erased subject, a value moved from another row). The `_pii` column stays, for the
/// write path to reuse the data key.
pub fn open(ctx: &AppCtx, coll: &Collection, rows: &mut Rows) {
    if !has_pii(coll) {
        return;
    }
    let Some(plan) = Plan::of(coll, rows) else {
        return;
    };
    for row in rows.rows.iter_mut() {
        let opened = plan.open_row(ctx, coll, row);
        for ((i, _), v) in plan.fields.iter().zip(opened) {
            row[*i] = v;
        }
    }
}

/// [`open`] into a new `Rows` (for rows shared with the record cache: the ciphertexts are not copied).
pub fn open_copy(ctx: &AppCtx, coll: &Collection, rows: &Rows) -> Rows {
    let Some(plan) = Plan::of(coll, rows).filter(|_| has_pii(coll)) else {
        return rows.clone();
    };
    let mut out = Rows {
        columns: rows.columns.clone(),
        rows: Vec::with_capacity(rows.rows.len()),
    };
    for row in &rows.rows {
        out.rows
            .push(plan.splice(row, plan.open_row(ctx, coll, row)));
    }
    out
}

/// Where a result's id, wrapped key and pii columns are (pii columns in column order).
struct Plan<'a> {
    id_at: usize,
    dek_at: Option<usize>,
    fields: Vec<(usize, &'a Field)>,
}

impl<'a> Plan<'a> {
    fn of(coll: &'a Collection, rows: &Rows) -> Option<Plan<'a>> {
        let col = |n: &str| rows.columns.iter().position(|c| c == n);
        let mut fields: Vec<(usize, &Field)> = basalt_core::pii::fields(&coll.fields)
            .filter_map(|f| col(&f.name).map(|i| (i, f)))
            .collect();
        fields.sort_by_key(|(i, _)| *i);
        Some(Plan {
            id_at: col("id")?,
            dek_at: col(DEK_COLUMN),
            fields,
        })
    }

    /// A copy of `row` with its pii columns replaced by `values` (in `fields` order).
    fn splice(&self, row: &[Value], values: Vec<Value>) -> Vec<Value> {
        let mut values = values.into_iter();
        let mut next = self.fields.iter().map(|(i, _)| *i).peekable();
        row.iter()
            .enumerate()
            .map(|(i, v)| {
                if next.peek() == Some(&i) {
                    next.next();
                    values.next().unwrap_or(Value::Null)
                } else {
                    v.clone()
                }
            })
            .collect()
    }

    /// The opened values of one row's pii columns, in `fields` order.
    fn open_row(&self, ctx: &AppCtx, coll: &Collection, row: &[Value]) -> Vec<Value> {
        let id = row[self.id_at].as_str().unwrap_or("");
        let dek = self
            .dek_at
            .and_then(|i| row[i].as_str())
            .filter(|w| !w.is_empty())
            .and_then(|w| ctx.pii.as_ref()?.unwrap(w, &coll.id, id));
        let rk = dek.as_ref().map(|k| RecordKey::new(k, &coll.id, id));
        self.fields
            .iter()
            .map(|(i, f)| match row[*i].as_str() {
                Some("") | None => Value::Json(basalt_core::record::zero(f).to_string()),
                // Not encrypted yet (the field was marked pii after it held data).
                Some(s) if !s.starts_with(basalt_core::pii::CIPHER_PREFIX) => {
                    Value::Json(plain_json(f, s).to_string())
                }
                Some(s) => match rk.as_ref().and_then(|k| k.open(&f.id, s)) {
                    Some(p) => Value::Json(plain_json(f, &p).to_string()),
                    None => Value::Json("null".into()),
                },
            })
            .collect()
    }
}

/// Which records' pii fields a caller sees in clear, per field.
enum Seen {
    All,
    None,
    Ids(HashSet<String>),
}

impl Seen {
    fn has(&self, id: &str) -> bool {
        match self {
            Seen::All => true,
            Seen::None => false,
            Seen::Ids(s) => s.contains(id),
        }
    }
}

/// Decides, for each pii field of `coll`, which of `ids` the caller may see in clear: superusers
/// all (unless a reason is required and missing), a missing `revealRule` none, an empty one all,
/// else the ids the rule admits (one query per distinct rule).
async fn decide(
    ctx: &AppCtx,
    coll: &Collection,
    ids: &[&str],
    info: &RequestInfo,
) -> ServiceResult<Vec<Seen>> {
    let su = info.is_superuser();
    let su_ok = su && (!ctx.pii_require_reason || !info.reason.trim().is_empty());
    let mut cache: Vec<(String, HashSet<String>)> = Vec::new();
    let mut out = Vec::new();
    for f in basalt_core::pii::fields(&coll.fields) {
        let rule = f.pii.as_ref().and_then(|p| p.reveal_rule.as_ref());
        let seen = match rule {
            _ if su => {
                if su_ok {
                    Seen::All
                } else {
                    Seen::None
                }
            }
            None => Seen::None,
            Some(r) if r.trim().is_empty() => Seen::All,
            Some(_) if ids.is_empty() => Seen::None,
            Some(r) => {
                if let Some((_, s)) = cache.iter().find(|(k, _)| k == r) {
                    Seen::Ids(s.clone())
                } else {
                    let s = admitted(ctx, coll, ids, r, info).await?;
                    cache.push((r.clone(), s.clone()));
                    Seen::Ids(s)
                }
            }
        };
        out.push(seen);
    }
    Ok(out)
}

/// The ids among `ids` that `rule` admits for this caller.
async fn admitted(
    ctx: &AppCtx,
    coll: &Collection,
    ids: &[&str],
    rule: &str,
    info: &RequestInfo,
) -> ServiceResult<HashSet<String>> {
    // A stored rule, compiled as `records::rule_condition` does (this module sits below
    // `records`, which calls it on every read).
    let e = basalt_core::filter::parse(rule)
        .map_err(|e| ServiceError(Error::internal(format!("stored revealRule: {e}"))))?;
    let cols = ctx.collections();
    let cond = Some(
        basalt_core::filter::compile::Compiler::new(ctx.dialect(), cols.as_ref(), info, true)
            .compile(coll, &e)?,
    );
    let mut s = ctx.sql();
    s.push("SELECT ")
        .push(MAIN)
        .push(".\"id\" FROM ")
        .ident(&coll.name)
        .push(" AS ")
        .push(MAIN)
        .push(" WHERE ")
        .push(MAIN)
        .push(".\"id\" IN (");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(", ");
        }
        s.bind(Value::Text(id.to_string()));
    }
    s.push(")");
    if let Some(c) = cond {
        s.push(" AND (").append(c).push(")");
    }
    let rows = ctx.store.query(&s).await?;
    Ok(rows
        .rows
        .into_iter()
        .filter_map(|mut r| r.pop().map(Value::into_string))
        .collect())
}

/// The mask of a plaintext value (the FF1 token for `"fpe": "digits"` fields of 6 digits or more).
pub fn mask_value(ctx: &AppCtx, coll: &Collection, f: &Field, plain: &Json) -> Json {
    if let (Some(true), Some(ring), Json::String(s)) = (
        f.pii.as_ref().map(|p| p.fpe_digits),
        ctx.pii.as_ref(),
        plain,
    ) {
        if let Some(t) = ring.fpe_digits(&coll.id, &f.id, s) {
            return Json::String(t);
        }
    }
    let m = f.pii.as_ref().map(|p| p.mask).unwrap_or(Mask::Redact);
    basalt_core::pii::mask(m, f, plain, || match (&ctx.pii, canonical(f, plain)) {
        (Some(r), Some(t)) => r.mask_hash(&coll.id, &f.id, &t),
        _ => String::new(),
    })
}

/// A field whose pii is being removed: plain for callers, events and writes.
pub(crate) fn is_decrypting(f: &Field) -> bool {
    f.pii.as_ref().is_some_and(|p| p.decrypting)
}

pub(crate) fn is_blank(v: &Json) -> bool {
    matches!(v, Json::Null) || v.as_str() == Some("")
}

/// Record rows as stored (sealed, as `records::list` and `records::fetch_rows_cached` return them)
/// made ready to leave the server: each pii value decrypted where the caller passes its
/// `revealRule` (audited), else its mask, taken from the ring's mask cache when this exact stored
/// value was masked before (no decryption). The fast path's twin of `open` + [`present_data`].
pub async fn present_sealed(
    ctx: &AppCtx,
    coll: &Collection,
    rows: &Rows,
    info: &RequestInfo,
) -> ServiceResult<Rows> {
    let (Some(plan), Some(ring)) = (Plan::of(coll, rows), ctx.pii.as_ref()) else {
        return Ok(open_copy(ctx, coll, rows));
    };
    let ids: Vec<&str> = rows
        .rows
        .iter()
        .map(|r| r[plan.id_at].as_str().unwrap_or(""))
        .collect();
    // `decide` answers in the order of `pii::fields`; the plan is in column order.
    let seen = decide(ctx, coll, &ids, info).await?;
    let order: Vec<usize> = plan
        .fields
        .iter()
        .map(|(_, f)| {
            basalt_core::pii::fields(&coll.fields)
                .position(|g| g.id == f.id)
                .unwrap_or(0)
        })
        .collect();
    let mut out = Rows {
        columns: rows.columns.clone(),
        rows: Vec::with_capacity(rows.rows.len()),
    };
    let mut revealed: Vec<(String, Vec<String>)> = Vec::new();
    for (row, id) in rows.rows.iter().zip(&ids) {
        let wrapped = plan.dek_at.and_then(|i| row[i].as_str()).unwrap_or("");
        let mut rk: Option<Option<RecordKey>> = None;
        let mut key = || -> Option<RecordKey> {
            let dek = ring.unwrap(wrapped, &coll.id, id)?;
            Some(RecordKey::new(&dek, &coll.id, id))
        };
        let mut values = Vec::with_capacity(plan.fields.len());
        let mut shown = Vec::new();
        for ((i, f), o) in plan.fields.iter().zip(&order) {
            let stored = row[*i].as_str().unwrap_or("");
            let clear = !stored.starts_with(basalt_core::pii::CIPHER_PREFIX);
            let v = if stored.is_empty() {
                Value::Json(basalt_core::record::zero(f).to_string())
            } else if clear {
                // Not encrypted yet (the field was marked pii after it held data).
                let p = plain_json(f, stored);
                if seen.get(*o).is_some_and(|s| s.has(id)) {
                    if !is_decrypting(f) {
                        shown.push(f.name.clone());
                    }
                    Value::Json(p.to_string())
                } else {
                    Value::Json(mask_value(ctx, coll, f, &p).to_string())
                }
            } else if wrapped.is_empty() {
                // Erased (or never had a key): nothing to decrypt.
                Value::Json("null".into())
            } else if seen.get(*o).is_some_and(|s| s.has(id)) {
                let k = rk.get_or_insert_with(&mut key);
                match k.as_ref().and_then(|k| k.open(&f.id, stored)) {
                    Some(p) => {
                        if !is_decrypting(f) {
                            shown.push(f.name.clone());
                        }
                        Value::Json(plain_json(f, &p).to_string())
                    }
                    None => Value::Json("null".into()),
                }
            } else {
                let mk = crate::keyring::mask_key(id, &f.id, wrapped, stored);
                match ring.cached_mask(&mk) {
                    Some(m) => Value::Json(m.to_string()),
                    None => {
                        let k = rk.get_or_insert_with(&mut key);
                        match k.as_ref().and_then(|k| k.open(&f.id, stored)) {
                            Some(p) => {
                                let m: Arc<str> = mask_value(ctx, coll, f, &plain_json(f, &p))
                                    .to_string()
                                    .into();
                                ring.cache_mask(mk, m.clone());
                                Value::Json(m.to_string())
                            }
                            None => Value::Json("null".into()),
                        }
                    }
                }
            };
            values.push(v);
        }
        out.rows.push(plan.splice(row, values));
        if !shown.is_empty() {
            revealed.push((id.to_string(), shown));
        }
    }
    audit(ctx, coll, revealed, info);
    Ok(out)
}

/// [`present_sealed`] for one opened record as data (`records::output`: responses built from the
/// write path, expand, realtime).
pub async fn present_data(
    ctx: &AppCtx,
    coll: &Collection,
    data: &mut Data,
    info: &RequestInfo,
) -> ServiceResult<()> {
    if !has_pii(coll) {
        return Ok(());
    }
    let id = basalt_core::record::id_of(data).to_string();
    let seen = decide(ctx, coll, &[&id], info).await?;
    let mut shown = Vec::new();
    for (f, s) in basalt_core::pii::fields(&coll.fields).zip(&seen) {
        let Some(v) = data.get_mut(&f.name) else {
            continue;
        };
        if is_blank(v) {
            continue;
        }
        if s.has(&id) {
            if !is_decrypting(f) {
                shown.push(f.name.clone());
            }
        } else {
            *v = mask_value(ctx, coll, f, v);
        }
    }
    if !shown.is_empty() {
        audit(ctx, coll, vec![(id, shown)], info);
    }
    Ok(())
}

fn audit(
    ctx: &AppCtx,
    coll: &Collection,
    revealed: Vec<(String, Vec<String>)>,
    info: &RequestInfo,
) {
    if revealed.is_empty() {
        return;
    }
    let actor = info
        .auth
        .as_ref()
        .map(|(c, r)| {
            format!(
                "{}:{}",
                c.name,
                r.get("id").and_then(Json::as_str).unwrap_or("")
            )
        })
        .unwrap_or_else(|| "guest".into());
    for (record, fields) in revealed {
        ctx.audit.push(crate::audit::Reveal {
            collection: coll.id.clone(),
            record,
            fields,
            actor: actor.clone(),
            route: info.route.clone(),
            ip: info.ip.clone(),
            reason: info.reason.clone(),
        });
    }
}

/// An event's copy of a record: pii values replaced by their masks (the outbox and every sink).
pub fn mask_event(ctx: &AppCtx, coll: &Collection, data: &mut Data) {
    for f in basalt_core::pii::fields(&coll.fields).filter(|f| !is_decrypting(f)) {
        if let Some(v) = data.get_mut(&f.name) {
            if !is_blank(v) {
                *v = mask_value(ctx, coll, f, v);
            }
        }
    }
    data.remove(DEK_COLUMN);
}

/// The plaintext pii values of a change (`record`: after it, `before`), sealed for sinks configured
/// to reveal them (`reveal_pii`): `<wrapped key>|<ciphertext>` under a key of its own, wrapped by
/// the primary key and bound to the collection, the record and the event id. `None` when no sink
/// reveals, or the change has no pii value. Erasure removes it from the record's events
/// (`privacy::scrub_events`).
pub fn seal_event(
    ctx: &AppCtx,
    coll: &Collection,
    ev: &basalt_events::Event,
    after: Option<&Data>,
    before: Option<&Data>,
) -> Option<String> {
    let ring = ctx.pii.as_ref().filter(|_| ctx.reveal_events)?;
    let pick = |d: Option<&Data>| {
        let mut m = serde_json::Map::new();
        for f in basalt_core::pii::fields(&coll.fields).filter(|f| !is_decrypting(f)) {
            if let Some(v) = d.and_then(|d| d.get(&f.name)).filter(|v| !is_blank(v)) {
                m.insert(f.name.clone(), v.clone());
            }
        }
        m
    };
    let (r, b) = (pick(after), pick(before));
    if r.is_empty() && b.is_empty() {
        return None;
    }
    let plain = serde_json::json!({"record": r, "before": b}).to_string();
    let dek = KeyRing::new_dek();
    let ct =
        RecordKey::new(&dek, &coll.id, &ev.record_id).seal(&format!("@event/{}", ev.id), &plain);
    Some(format!("{}|{ct}", ring.wrap(&dek, &coll.id, &ev.record_id)))
}

/// The event as a sink configured to reveal delivers it: the pii values of [`seal_event`] in place
/// of their masks, and the names of the fields that now hold a value in clear (for the audit).
/// `None` when it has nothing sealed; pii values whose key is gone (an old key dropped from the ring)
/// become `null`, never the mask's text passed off as a value.
pub fn open_event(
    ctx: &AppCtx,
    ev: &basalt_events::Event,
) -> Option<(basalt_events::Event, Vec<String>)> {
    let sealed = ev.sealed.as_deref()?;
    let coll = ctx.collection(&ev.collection_id);
    let opened = ctx.pii.as_ref().and_then(|ring| {
        let (wrapped, ct) = sealed.split_once('|')?;
        let dek = ring.unwrap_once(wrapped, &ev.collection_id, &ev.record_id)?;
        let plain = RecordKey::new(&dek, &ev.collection_id, &ev.record_id)
            .open(&format!("@event/{}", ev.id), ct)?;
        serde_json::from_str::<Json>(&plain).ok()
    });
    let mut out = ev.clone();
    out.sealed = None;
    let mut shown: Vec<String> = Vec::new();
    for (part, map) in [("record", &mut out.record), ("before", &mut out.before)] {
        let Some(map) = map.as_mut() else { continue };
        let values = opened.as_ref().and_then(|o| o.get(part));
        for f in coll
            .iter()
            .flat_map(|c| basalt_core::pii::fields(&c.fields))
        {
            if is_decrypting(f) {
                continue;
            }
            match values.and_then(|v| v.get(&f.name)) {
                Some(v) => {
                    if !is_blank(v) && !shown.contains(&f.name) {
                        shown.push(f.name.clone());
                    }
                    map.insert(f.name.clone(), v.clone());
                }
                // A value was there (its mask shows) but its sealed copy does not open.
                None if map.get(&f.name).is_some_and(|v| !is_blank(v)) => {
                    map.insert(f.name.clone(), Json::Null);
                }
                None => {}
            }
        }
    }
    Some((out, shown))
}

/// A condition matching `value` in `field` of `coll` (pii: by its blind index under every key).
pub fn eq_condition(
    ctx: &AppCtx,
    coll: &Collection,
    field: &Field,
    value: &str,
    s: &mut basalt_core::sql::Sql,
) -> ServiceResult<()> {
    if field.pii.is_none() {
        if field.ty() == FieldType::Email {
            s.push("LOWER(")
                .ident(&field.name)
                .push(") = LOWER(")
                .bind(Value::Text(value.into()))
                .push(")");
        } else {
            s.ident(&field.name)
                .push(" = ")
                .bind(Value::Text(value.into()));
        }
        return Ok(());
    }
    let ring = ring(ctx)?;
    let text = canonical(field, &Json::String(value.to_string())).unwrap_or_default();
    if text.is_empty() || !field.pii.as_ref().is_some_and(|p| p.searchable) {
        s.push("1=0");
        return Ok(());
    }
    s.push("(").ident(&index_column(field)).push(" IN (");
    for (i, v) in ring
        .index_all(&coll.id, &field.id, &text)
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            s.push(", ");
        }
        s.bind(Value::Text(v));
    }
    s.push(")");
    basalt_core::pii::or_clear_match(s, "", field, &text);
    s.push(")");
    Ok(())
}

/// Notes, inside a collection change's transaction, that `field`'s existing values are to be
/// encrypted (`privacy::run_migrations` does it).
pub async fn add_migration(
    ctx: &AppCtx,
    tx: &mut Box<dyn basalt_store::Tx>,
    coll_id: &str,
    field_id: &str,
) -> ServiceResult<()> {
    let q = basalt_core::pii::migrations_sql(ctx.dialect());
    let mut list = basalt_core::pii::parse_migrations(tx.query(&q).await?.scalar());
    let item = (coll_id.to_string(), field_id.to_string());
    if !list.contains(&item) {
        list.push(item);
    }
    save_param(ctx, tx, basalt_core::pii::MIGRATIONS_PARAM, &list).await
}

/// Notes, inside a collection change's transaction, that `field` lost pii and its values are to be
/// decrypted (`privacy::run_migrations` does it).
pub async fn add_decryption(
    ctx: &AppCtx,
    tx: &mut Box<dyn basalt_store::Tx>,
    coll_id: &str,
    field_id: &str,
    searchable: bool,
) -> ServiceResult<()> {
    let q = basalt_core::pii::decryptions_sql(ctx.dialect());
    let mut list = basalt_core::pii::parse_decryptions(tx.query(&q).await?.scalar());
    if !list.iter().any(|(c, f, _)| c == coll_id && f == field_id) {
        list.push((coll_id.to_string(), field_id.to_string(), searchable));
    }
    save_param(ctx, tx, basalt_core::pii::DECRYPTIONS_PARAM, &list).await
}

/// Replaces the `_params` row `key` with `list` as JSON (none when empty).
pub async fn save_param<T: serde::Serialize>(
    ctx: &AppCtx,
    tx: &mut Box<dyn basalt_store::Tx>,
    key: &str,
    list: &[T],
) -> ServiceResult<()> {
    let mut d = ctx.sql();
    d.push("DELETE FROM _params WHERE key = ")
        .bind(Value::Text(key.into()));
    tx.execute(&d).await?;
    if !list.is_empty() {
        let mut i = ctx.sql();
        i.push("INSERT INTO _params (key, value) VALUES (")
            .bind(Value::Text(key.into()))
            .push(", ")
            .bind(Value::Text(
                serde_json::to_string(list).unwrap_or_else(|_| "[]".into()),
            ))
            .push(")");
        tx.execute(&i).await?;
    }
    Ok(())
}

/// While a unique searchable pii field's values are being encrypted (or decrypted), the rows in
/// clear have no blind index, so the unique index cannot see them: this checks every row, by blind
/// index or clear value, for `data`'s value.
/// The field that would be duplicated, if any.
pub async fn pending_unique_conflict(
    ctx: &AppCtx,
    tx: &mut Box<dyn basalt_store::Tx>,
    coll: &Collection,
    data: &Data,
    written: Option<&[&str]>,
) -> ServiceResult<Option<String>> {
    let id = basalt_core::record::id_of(data);
    for f in basalt_core::pii::fields(&coll.fields) {
        let p = f.pii.as_ref();
        if !p.is_some_and(|p| (p.pending || p.decrypting) && p.searchable)
            || written.is_some_and(|w| !w.contains(&f.name.as_str()))
        {
            continue;
        }
        let unique = coll
            .indexes
            .iter()
            .filter_map(|i| basalt_core::schema::Index::parse(i).ok())
            .any(|i| i.unique && i.columns == [f.name.clone()]);
        let value = data.get(&f.name).and_then(Json::as_str).unwrap_or("");
        if !unique || value.is_empty() {
            continue;
        }
        let mut s = ctx.sql();
        s.push("SELECT 1 FROM ").ident(&coll.name).push(" WHERE ");
        eq_condition(ctx, coll, f, value, &mut s)?;
        s.push(" AND \"id\" != ")
            .bind(Value::Text(id.into()))
            .push(" LIMIT 1");
        if !tx.query(&s).await?.rows.is_empty() {
            return Ok(Some(f.name.clone()));
        }
    }
    Ok(None)
}
