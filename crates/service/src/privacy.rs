//! PII operations above the record path (issue #16): crypto-shredding erasure and its re-application
//! after restores, GDPR export, online key rotation, the reveal-audit writer, and realtime's view of
//! an event's pii values. The codec every read and write goes through is [`crate::pii`].

use std::sync::Arc;

use basalt_core::pii::{index_column, DEK_COLUMN};
use basalt_core::record::Data;
use basalt_core::schema::Collection;
use basalt_core::sql::Value;
use basalt_core::Error;
use serde_json::Value as Json;

use crate::error::{ServiceError, ServiceResult};
use crate::keyring::KeyRing;
use crate::pii::{has_pii, is_blank, mask_value, ring};
use crate::AppCtx;

/// An event's record (masked) made ready for [`crate::records::output`] in realtime: its pii values
/// are taken from the live row when the row is still in the state the event describes (every field
/// equal, pii ones compared as masks), so a subscriber passing `revealRule` sees them and every other one their mask; when
/// the row changed since or is gone (deletes), they are `null`: the plaintext of that state is no
/// longer in the server (the event holds masks only).
pub async fn unmask_event_record(
    ctx: &AppCtx,
    coll: &Collection,
    data: &mut Data,
) -> ServiceResult<()> {
    let id = basalt_core::record::id_of(data).to_string();
    let live = crate::records::load_record(ctx, coll, &id).await?;
    // The same state: every field the event carries is equal (pii ones as masks).
    let same = live.as_ref().is_some_and(|l| {
        coll.fields.iter().all(|f| match data.get(&f.name) {
            None => true,
            Some(v) if f.pii.is_some() => {
                let lv = l.get(&f.name).cloned().unwrap_or(Json::Null);
                let lm = if is_blank(&lv) {
                    lv
                } else {
                    mask_value(ctx, coll, f, &lv)
                };
                &lm == v
            }
            Some(v) => l.get(&f.name) == Some(v),
        })
    });
    for f in basalt_core::pii::fields(&coll.fields) {
        let v = match (&live, same) {
            (Some(l), true) => l.get(&f.name).cloned().unwrap_or(Json::Null),
            _ => Json::Null,
        };
        data.insert(f.name.clone(), v);
    }
    Ok(())
}

/// Writes queued reveals to `_piiAudit`, a batch per transaction, each row with its event.
pub async fn run_audit_writer(ctx: AppCtx) {
    let Some(mut rx) = ctx.audit.take_receiver() else {
        return;
    };
    let mut buf = Vec::with_capacity(512);
    loop {
        if rx.recv_many(&mut buf, 512).await == 0 {
            return;
        }
        // Let a burst gather into one transaction.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        while buf.len() < 4096 {
            match rx.try_recv() {
                Ok(r) => buf.push(r),
                Err(_) => break,
            }
        }
        let n = buf.len() as u64;
        match write_audit(&ctx, &buf).await {
            Ok(()) => {
                ctx.audit
                    .written
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => {
                ctx.audit
                    .dropped
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(error = %e.0, reveals = n, "pii audit batch not written");
            }
        }
        buf.clear();
    }
}

async fn write_audit(ctx: &AppCtx, batch: &[crate::audit::Reveal]) -> ServiceResult<()> {
    let Some(coll) = ctx.collection(basalt_events::PII_AUDIT) else {
        return Ok(());
    };
    let now = basalt_core::time::now();
    // One row per distinct reveal in the batch (~20 ms of reads), with how many times it happened:
    // a record read in a loop costs a row per batch, not a row per read.
    let mut groups: Vec<(&crate::audit::Reveal, u64)> = Vec::new();
    let mut at: std::collections::HashMap<&crate::audit::Reveal, usize> =
        std::collections::HashMap::new();
    for r in batch {
        match at.get(r) {
            Some(&i) => groups[i].1 += 1,
            None => {
                at.insert(r, groups.len());
                groups.push((r, 1));
            }
        }
    }
    let mut tx = ctx.store.begin().await?;
    let mut seq = 0;
    for (r, n) in groups {
        let mut d = Data::new();
        d.insert("id".into(), Json::String(basalt_core::id::new_record_id()));
        d.insert("collectionRef".into(), Json::String(r.collection.clone()));
        d.insert("recordRef".into(), Json::String(r.record.clone()));
        d.insert("fields".into(), Json::String(r.fields.join(",")));
        d.insert("actor".into(), Json::String(r.actor.clone()));
        d.insert("route".into(), Json::String(r.route.clone()));
        d.insert("ip".into(), Json::String(r.ip.clone()));
        d.insert("reason".into(), Json::String(r.reason.clone()));
        d.insert("count".into(), Json::from(n));
        d.insert("created".into(), Json::String(now.clone()));
        d.insert("updated".into(), Json::String(now.clone()));
        tx.execute(&crate::records::insert_sql(ctx, &coll, &d)?)
            .await?;
        seq = crate::records::emit(
            ctx,
            &mut tx,
            &coll,
            basalt_events::Action::Create,
            Some(&d),
            None,
        )
        .await?;
    }
    tx.commit().await?;
    ctx.committed(seq).await;
    Ok(())
}

/// The table of erased subjects (kept live across backup restores).
pub const ERASURES: &str = "_piiErasures";

fn erase_sql(ctx: &AppCtx, coll: &Collection) -> basalt_core::sql::Sql {
    let mut s = ctx.sql();
    s.push("UPDATE ")
        .ident(&coll.name)
        .push(" SET ")
        .ident(DEK_COLUMN)
        .push(" = ''");
    // The ciphertexts stay: without their key they are noise (that is the shredding).
    for f in basalt_core::pii::fields(&coll.fields) {
        if f.pii.as_ref().is_some_and(|p| p.searchable) {
            s.push(", ").ident(&index_column(f)).push(" = ''");
        }
    }
    s
}

fn pii_collection(ctx: &AppCtx, key: &str) -> ServiceResult<Arc<Collection>> {
    ctx.collection(key).filter(|c| has_pii(c)).ok_or_else(|| {
        ServiceError(Error::NotFound(
            "No collection with pii fields has that name or id.".into(),
        ))
    })
}

/// Crypto-shredding erasure of one subject (`POST /api/pii/erase`, `basalt pii erase`): the
/// record's data key is deleted, its pii columns and blind indexes cleared, the subject added to the
/// erasure list (re-applied after any backup restore), and an `update` event emitted (its pii
/// fields `null`). Every other copy of the values (older backups, replicas of the row) is
/// ciphertext under a key that no longer exists. The rest of the record stays.
pub async fn erase(ctx: &AppCtx, collection: &str, id: &str) -> ServiceResult<Json> {
    let coll = pii_collection(ctx, collection)?;
    let mut tx = ctx.store.begin().await?;
    crate::records::lock_row(ctx, &mut tx, &coll, id).await?;
    let before = crate::records::load_in_tx(ctx, &mut tx, &coll, &[id.to_string()])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ServiceError(Error::NotFound("The record does not exist.".into())))?;
    let mut s = erase_sql(ctx, &coll);
    s.push(" WHERE \"id\" = ").bind(Value::Text(id.into()));
    tx.execute(&s).await?;
    let now = basalt_core::time::now();
    let mut e = ctx.sql();
    e.push("INSERT INTO ")
        .ident(ERASURES)
        .push(" (collection_id, record_id, erased) VALUES (")
        .bind(Value::Text(coll.id.clone()))
        .push(", ")
        .bind(Value::Text(id.into()))
        .push(", ")
        .bind(Value::Text(now.clone()))
        .push(")");
    if ctx.dialect() == basalt_core::sql::Dialect::Postgres {
        e.push(" ON CONFLICT DO NOTHING");
    } else {
        e.text = e.text.replacen("INSERT INTO", "INSERT OR IGNORE INTO", 1);
    }
    tx.execute(&e).await?;
    let mut after = before.clone();
    for f in basalt_core::pii::fields(&coll.fields) {
        after.insert(f.name.clone(), Json::Null);
    }
    // The event's `before` is what is being erased: masks only, nothing sealed for a revealing
    // sink; the record's earlier events lose their sealed values too.
    let seq = crate::records::emit_sealed(
        ctx,
        &mut tx,
        &coll,
        basalt_events::Action::Update,
        Some(&after),
        Some(&before),
        false,
    )
    .await?;
    scrub_events(ctx, &mut tx, &coll.id, id).await?;
    tx.commit().await?;
    if let Some(r) = &ctx.pii {
        r.forget_keys();
    }
    ctx.cache
        .invalidate(&[(coll.id.clone(), coll.updated.clone(), id.to_string())])
        .await;
    ctx.committed(seq).await;
    tracing::info!(collection = %coll.name, record = id, "pii erased");
    Ok(
        serde_json::json!({"collectionId": coll.id, "collectionName": coll.name, "id": id, "erased": now}),
    )
}

/// Removes the sealed pii values (for revealing sinks) from the outbox's events of one record: an
/// erased subject's values must not survive in a sink's backlog (nor in a backup's outbox, which
/// [`apply_erasures`] scrubs after a restore).
async fn scrub_events(
    ctx: &AppCtx,
    tx: &mut Box<dyn basalt_store::Tx>,
    coll_id: &str,
    id: &str,
) -> ServiceResult<()> {
    let mut q = ctx.sql();
    q.push("SELECT seq, data FROM _events WHERE collection_id = ")
        .bind(Value::Text(coll_id.into()))
        .push(" AND record_id = ")
        .bind(Value::Text(id.into()));
    for r in tx.query(&q).await?.rows {
        let mut it = r.into_iter();
        let (Some(seq), Some(data)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(Json::Object(mut d)) = serde_json::from_str::<Json>(&data.into_string()) else {
            continue;
        };
        if d.remove("sealed").is_some() {
            set_event_data(ctx, tx, seq, Json::Object(d)).await?;
        }
    }
    Ok(())
}

/// A sink whose section sets `reveal_pii`: it receives each event with its pii values in clear
/// (`pii::open_event`) instead of their masks. Every record revealed is audited like a read, the
/// actor being `sink:<name>`.
pub struct RevealSink {
    ctx: AppCtx,
    inner: Arc<dyn basalt_events::sink::Sink>,
    actor: String,
}

impl RevealSink {
    pub fn new(ctx: &AppCtx, inner: Arc<dyn basalt_events::sink::Sink>) -> RevealSink {
        RevealSink {
            ctx: ctx.clone(),
            actor: format!("sink:{}", inner.name()),
            inner,
        }
    }
}

#[async_trait::async_trait]
impl basalt_events::sink::Sink for RevealSink {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn active(&self) -> bool {
        self.inner.active()
    }
    async fn probe(&self) -> Result<(), String> {
        self.inner.probe().await
    }
    fn reveals_pii(&self) -> bool {
        true
    }
    async fn deliver(&self, events: &[Arc<basalt_events::Event>]) -> Result<(), String> {
        let mut out = Vec::with_capacity(events.len());
        let mut audits = Vec::new();
        for e in events {
            match crate::pii::open_event(&self.ctx, e) {
                Some((o, fields)) => {
                    if !fields.is_empty() {
                        audits.push(crate::audit::Reveal {
                            collection: e.collection_id.clone(),
                            record: e.record_id.clone(),
                            fields,
                            actor: self.actor.clone(),
                            route: "events".into(),
                            ip: String::new(),
                            reason: String::new(),
                        });
                    }
                    out.push(Arc::new(o));
                }
                None => out.push(e.clone()),
            }
        }
        self.inner.deliver(&out).await?;
        for a in audits {
            self.ctx.audit.push(a);
        }
        Ok(())
    }
}

/// Re-applies the erasure list (after a backup restore brought older rows back); how many records
/// it cleared.
pub async fn apply_erasures(ctx: &AppCtx) -> ServiceResult<u64> {
    if let Some(r) = &ctx.pii {
        r.forget_keys();
    }
    let mut q = ctx.sql();
    q.push("SELECT collection_id, record_id FROM ")
        .ident(ERASURES)
        .push(" ORDER BY collection_id");
    let rows = ctx.store.query(&q).await?;
    let mut n = 0;
    let mut tx = ctx.store.begin().await?;
    for r in rows.rows {
        let mut it = r.into_iter();
        let (c, id) = (
            it.next().map(Value::into_string).unwrap_or_default(),
            it.next().map(Value::into_string).unwrap_or_default(),
        );
        let Some(coll) = ctx.collection(&c).filter(|c| has_pii(c)) else {
            continue;
        };
        scrub_events(ctx, &mut tx, &coll.id, &id).await?;
        let mut s = erase_sql(ctx, &coll);
        s.push(" WHERE \"id\" = ")
            .bind(Value::Text(id))
            .push(" AND ")
            .ident(DEK_COLUMN)
            .push(" != ''");
        n += tx.execute(&s).await?;
    }
    tx.commit().await?;
    Ok(n)
}

/// A subject's data (GDPR access, `GET /api/pii/export/{collection}/{id}`): the record as the caller
/// may view it (viewRule), pii fields in clear where the caller passes their `revealRule` (audited),
/// with which fields are pii and whether the subject was erased.
pub async fn export(
    ctx: &AppCtx,
    req: &crate::Req,
    collection: &str,
    id: &str,
) -> ServiceResult<Json> {
    let coll = pii_collection(ctx, collection)?;
    let info = req.info(&ctx.collections(), None, "export");
    let data = crate::records::fetch_with_rule(ctx, &coll, id, &coll.view_rule, &info, None)
        .await?
        .ok_or_else(|| ServiceError(Error::NotFound("The record does not exist.".into())))?;
    let erased = data
        .get(DEK_COLUMN)
        .and_then(Json::as_str)
        .is_none_or(str::is_empty);
    let record = crate::records::output(ctx, &coll, data, &info).await;
    let fields: Vec<&str> = basalt_core::pii::fields(&coll.fields)
        .map(|f| f.name.as_str())
        .collect();
    Ok(serde_json::json!({
        "collectionId": coll.id,
        "collectionName": coll.name,
        "record": record,
        "piiFields": fields,
        "erased": erased,
    }))
}

/// The ids of the next 200 rows `from` (` FROM … WHERE …`) selects, locked for `tx` (PostgreSQL
/// `FOR UPDATE`, skipping rows another transaction holds when `skip_locked`; SQLite's transaction
/// holds the writer).
async fn lock_batch(
    ctx: &AppCtx,
    tx: &mut Box<dyn basalt_store::Tx>,
    from: basalt_core::sql::Sql,
    skip_locked: bool,
) -> ServiceResult<Vec<String>> {
    let mut s = ctx.sql();
    s.push("SELECT \"id\"");
    s.append(from);
    s.push(" ORDER BY \"id\" LIMIT 200");
    if ctx.dialect() == basalt_core::sql::Dialect::Postgres {
        s.push(if skip_locked {
            " FOR UPDATE SKIP LOCKED"
        } else {
            " FOR UPDATE"
        });
    }
    Ok(tx
        .query(&s)
        .await?
        .rows
        .into_iter()
        .filter_map(|mut r| r.pop().map(Value::into_string))
        .collect())
}

/// Records of `coll` whose data key is wrapped by another key than the primary.
fn behind(ctx: &AppCtx, coll: &Collection, primary: &str) -> basalt_core::sql::Sql {
    let prefix = format!("{primary}.");
    let mut s = ctx.sql();
    s.push(" FROM ")
        .ident(&coll.name)
        .push(" WHERE ")
        .ident(DEK_COLUMN)
        .push(" != '' AND substr(")
        .ident(DEK_COLUMN)
        .push(", 1, CAST(")
        .bind(Value::Int(prefix.len() as i64))
        .push(" AS INTEGER)) != ")
        .bind(Value::Text(prefix));
    s
}

/// How many records still have a data key wrapped by a non-primary key, per pii collection.
pub async fn rotation_backlog(ctx: &AppCtx) -> ServiceResult<Vec<(String, i64)>> {
    let ring = ring(ctx)?;
    let mut out = Vec::new();
    for coll in ctx.collections().list.iter().filter(|c| has_pii(c)) {
        let mut s = ctx.sql();
        s.push("SELECT COUNT(*)");
        s.append(behind(ctx, coll, ring.primary_id()));
        out.push((coll.name.clone(), ctx.store.query(&s).await?.scalar_int()));
    }
    let mut s = ctx.sql();
    s.push("SELECT COUNT(*)");
    s.append(sealed_behind(ctx, ring.primary_id()));
    let events = ctx.store.query(&s).await?.scalar_int();
    if events > 0 {
        out.push(("_events".into(), events));
    }
    Ok(out)
}

/// ` FROM … WHERE` of the outbox events sealed for revealing sinks under another key than `primary`
/// (the test is on the JSON text: `"sealed":"<key id>.…`; key ids are letters, digits, `_`, `-`).
fn sealed_behind(ctx: &AppCtx, primary: &str) -> basalt_core::sql::Sql {
    let id = primary
        .replace('\\', "\\\\")
        .replace('_', "\\_")
        .replace('%', "\\%");
    let mut s = ctx.sql();
    s.push(" FROM _events WHERE data LIKE '%\"sealed\":%' AND data NOT LIKE ")
        .bind(Value::Text(format!("%\"sealed\":\"{id}.%")))
        .push(" ESCAPE '\\'");
    s
}

/// Rewraps the keys of events sealed for revealing sinks under the primary key, 500 events per
/// transaction in sequence order (an outbox behind a sink that is down may be long). An event whose
/// key left the ring already is skipped: a revealing sink gets `null` for its values.
async fn rewrap_events(ctx: &AppCtx, ring: &KeyRing) -> ServiceResult<u64> {
    let mut n = 0;
    let mut last = Value::Int(0);
    loop {
        let mut tx = ctx.store.begin().await?;
        let mut q = ctx.sql();
        q.push("SELECT seq, collection_id, record_id, data");
        q.append(sealed_behind(ctx, ring.primary_id()));
        q.push(" AND seq > ")
            .bind(last.clone())
            .push(" ORDER BY seq LIMIT 500");
        let rows = tx.query(&q).await?.rows;
        if rows.is_empty() {
            return Ok(n);
        }
        for r in rows {
            let mut it = r.into_iter();
            let (Some(seq), Some(c), Some(id), Some(data)) =
                (it.next(), it.next(), it.next(), it.next())
            else {
                continue;
            };
            last = seq.clone();
            let (c, id) = (c.into_string(), id.into_string());
            let Ok(Json::Object(mut d)) = serde_json::from_str::<Json>(&data.into_string()) else {
                continue;
            };
            let Some((wrapped, ct)) = d
                .get("sealed")
                .and_then(Json::as_str)
                .and_then(|s| s.split_once('|'))
                .map(|(w, c)| (w.to_string(), c.to_string()))
            else {
                continue;
            };
            let Some(dek) = ring.unwrap_once(&wrapped, &c, &id) else {
                tracing::warn!(seq = ?seq, "pii rotation: an event's key is not in the ring any more");
                continue;
            };
            d.insert(
                "sealed".into(),
                Json::String(format!("{}|{ct}", ring.wrap(&dek, &c, &id))),
            );
            set_event_data(ctx, &mut tx, seq, Json::Object(d)).await?;
            n += 1;
        }
        tx.commit().await?;
    }
}

/// Rewraps every data key under the primary key and re-keys the blind indexes with it, 200 records
/// per transaction, under live traffic: each batch locks its rows (PostgreSQL `FOR UPDATE`; SQLite's
/// writer), so a concurrent update either ran before (and is rewrapped here) or waits and writes
/// under the primary itself. Record values are not re-encrypted (their data keys do not change);
/// once the backlog is zero, the old master key can leave the ring. `progress` is called after each
/// batch with (collection, done, remaining).
pub async fn rotate(ctx: &AppCtx, mut progress: impl FnMut(&str, u64, u64)) -> ServiceResult<u64> {
    let ring = ring(ctx)?.clone();
    let mut total = 0u64;
    let list: Vec<Arc<Collection>> = ctx
        .collections()
        .list
        .iter()
        .filter(|c| has_pii(c))
        .cloned()
        .collect();
    for coll in list {
        // Counted once: a count per batch would scan the table once per 200 rows.
        let mut c = ctx.sql();
        c.push("SELECT COUNT(*)");
        c.append(behind(ctx, &coll, ring.primary_id()));
        let behind_at_start = ctx.store.query(&c).await?.scalar_int().max(0) as u64;
        let mut done = 0u64;
        loop {
            let mut tx = ctx.store.begin().await?;
            let ids =
                lock_batch(ctx, &mut tx, behind(ctx, &coll, ring.primary_id()), false).await?;
            if ids.is_empty() {
                progress(&coll.name, done, 0);
                break;
            }
            let records = crate::records::load_in_tx(ctx, &mut tx, &coll, &ids).await?;
            let mut touched = Vec::with_capacity(records.len());
            for d in &records {
                let id = basalt_core::record::id_of(d);
                let wrapped = d.get(DEK_COLUMN).and_then(Json::as_str);
                // A key no longer in the ring cannot be rewrapped: stop rather than shred.
                if wrapped.is_some_and(|w| ring.unwrap(w, &coll.id, id).is_none()) {
                    return Err(ServiceError(Error::internal(format!(
                        "{}/{id}: its data key is wrapped by a key that is not in the ring",
                        coll.name
                    ))));
                }
                // No field written: the key rewrapped and the blind indexes re-keyed (the row is
                // behind, so there is always something to write).
                tx.execute(&crate::records::update_sql_of(ctx, &coll, id, d, &[])?)
                    .await?;
                touched.push((coll.id.clone(), coll.updated.clone(), id.to_string()));
            }
            tx.commit().await?;
            ctx.cache.invalidate(&touched).await;
            done += touched.len() as u64;
            total += touched.len() as u64;
            // Writes meanwhile rewrap rows too: the estimate only ever errs high, and ends at 0.
            progress(&coll.name, done, behind_at_start.saturating_sub(done));
        }
    }
    total += rewrap_events(ctx, &ring).await?;
    Ok(total)
}

/// Starts [`run_rotation`] in the background (`POST /api/pii/rotate`); its progress is in
/// [`status`]. One rotation at a time per node.
pub fn start_rotation(ctx: &AppCtx, req: &crate::Req) -> ServiceResult<Json> {
    req.require_superuser()?;
    ring(ctx)?;
    if ctx
        .rotation
        .running
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return Err(ServiceError(Error::BadRequest(
            "A key rotation is already running.".into(),
        )));
    }
    let c = ctx.clone();
    tokio::spawn(async move {
        let _ = run_rotation(&c).await;
    });
    Ok(serde_json::json!({"started": true}))
}

/// Runs [`rotate`] to the end, keeping [`status`]'s counters (the `__basaltPiiRotate__` cron job
/// and `POST /api/pii/rotate`). Returns at once when a rotation already runs on this node.
pub async fn run_rotation(ctx: &AppCtx) -> ServiceResult<()> {
    use std::sync::atomic::Ordering;
    ring(ctx)?;
    if ctx.rotation.running.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    ctx.rotation.rewrapped.store(0, Ordering::Relaxed);
    let r = rotate(ctx, |_, _, left| {
        ctx.rotation.remaining.store(left, Ordering::Relaxed);
    })
    .await;
    match &r {
        Ok(n) => {
            ctx.rotation.rewrapped.store(*n, Ordering::Relaxed);
            tracing::info!(records = n, "pii key rotation finished");
        }
        Err(e) => {
            tracing::warn!(error = %e.0, "pii key rotation failed");
            if let Ok(mut g) = ctx.rotation.last_error.lock() {
                *g = e.0.to_string();
            }
        }
    }
    ctx.rotation.running.store(false, Ordering::SeqCst);
    r.map(|_| ())
}

/// The PII part of `/api/health` (superusers) and `GET /api/pii/rotate`: the ring's key ids and
/// primary (never a key), the rotation backlog per collection, the audit queue's counters.
pub async fn status(ctx: &AppCtx) -> ServiceResult<Json> {
    use std::sync::atomic::Ordering;
    let Some(ring) = ctx.pii.as_ref() else {
        return Ok(serde_json::json!({"configured": false}));
    };
    let backlog: serde_json::Map<String, Json> = rotation_backlog(ctx)
        .await?
        .into_iter()
        .map(|(c, n)| (c, Json::from(n)))
        .collect();
    Ok(serde_json::json!({
        "configured": true,
        "keys": ring.ids().collect::<Vec<_>>(),
        "primary": ring.primary_id(),
        "rotation": {
            "running": ctx.rotation.running.load(Ordering::Relaxed),
            "rewrapped": ctx.rotation.rewrapped.load(Ordering::Relaxed),
            "behind": backlog,
            "lastError": ctx.rotation.last_error.lock().map(|g| g.clone()).unwrap_or_default(),
        },
        "encrypting": migration_backlog(ctx).await?,
        "decrypting": decryption_backlog(ctx).await?,
        "audit": {
            "written": ctx.audit.written.load(Ordering::Relaxed),
            "dropped": ctx.audit.dropped.load(Ordering::Relaxed),
        },
    }))
}

/// The pending `[collection id, field id]` encryptions ([`basalt_core::pii::MIGRATIONS_PARAM`]).
async fn pending_migrations(ctx: &AppCtx) -> ServiceResult<Vec<(String, String)>> {
    let q = basalt_core::pii::migrations_sql(ctx.dialect());
    Ok(basalt_core::pii::parse_migrations(
        ctx.store.query(&q).await?.scalar(),
    ))
}

/// `WHERE` rows of `coll` whose `field` still holds a value in clear.
fn clear_rows(ctx: &AppCtx, coll: &Collection, field: &str) -> basalt_core::sql::Sql {
    let mut s = ctx.sql();
    s.push(" FROM ")
        .ident(&coll.name)
        .push(" WHERE ")
        .ident(field)
        .push(" != '' AND substr(")
        .ident(field)
        .push(", 1, 5) != 'pii1:'");
    s
}

/// Rows still in clear per pending encryption, for `/api/health`.
pub async fn migration_backlog(ctx: &AppCtx) -> ServiceResult<Vec<Json>> {
    backlog(ctx, pending_migrations(ctx).await?.into_iter(), clear_rows).await
}

/// Encrypts the existing values of fields marked pii after they held data, 200 rows per
/// transaction, locked as a rotation locks them, then drops the field from the pending list (and
/// every node stops comparing clear rows). Resumable by construction: what is left is whatever
/// value is still in clear. Runs on nodes whose target runs the pruner; two nodes share the work
/// (`SKIP LOCKED` on PostgreSQL).
pub async fn run_migrations(ctx: AppCtx) {
    // Without a key ring no field is pii, and none can become so: nothing to poll for.
    if ctx.pii.is_none() {
        return;
    }
    loop {
        let step = match migrate_once(&ctx).await {
            Ok(false) => decrypt_once(&ctx).await,
            other => other,
        };
        match step {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e.0, "pii encryption of existing values failed; retrying")
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// One batch of the first pending encryption; whether there may be more right away.
async fn migrate_once(ctx: &AppCtx) -> ServiceResult<bool> {
    if ctx.pii.is_none() {
        return Ok(false);
    }
    let pending = pending_migrations(ctx).await?;
    let Some((c, f)) = pending.first().cloned() else {
        return Ok(false);
    };
    let coll = ctx.collection(&c);
    let field = coll
        .as_ref()
        .and_then(|x| x.fields.iter().find(|x| x.id == f && x.pii.is_some()))
        .map(|x| x.name.clone());
    let (Some(coll), Some(field)) = (coll, field) else {
        // The collection or field went away (or lost pii): nothing left to do for it.
        finish_migration(ctx, &c, &f).await?;
        return Ok(true);
    };
    match rewrite_batch(ctx, &coll, &field, clear_rows).await? {
        Batch::Rewrote => Ok(true),
        Batch::Busy => Ok(false),
        Batch::Done => {
            // The outbox still holds events written before the field was pii: mask them there too,
            // then rewrite the files so no old row version keeps a value in clear.
            mask_outbox(ctx, &coll, &field).await?;
            ctx.store.scrub().await?;
            finish_migration(ctx, &c, &f).await?;
            tracing::info!(collection = %coll.name, field = %field, "pii: existing values encrypted");
            Ok(true)
        }
    }
}

enum Batch {
    /// A batch was rewritten; there may be more.
    Rewrote,
    /// Rows are left, but another transaction holds them for now.
    Busy,
    /// No row is left.
    Done,
}

/// Rewrites the next 200 rows of `coll` that `rows` selects (` FROM … WHERE …`) through the write
/// path, so `field` is stored as its definition now says (sealed, or in clear while pii is being
/// removed).
async fn rewrite_batch(
    ctx: &AppCtx,
    coll: &Collection,
    field: &str,
    rows: fn(&AppCtx, &Collection, &str) -> basalt_core::sql::Sql,
) -> ServiceResult<Batch> {
    let mut tx = ctx.store.begin().await?;
    let ids = lock_batch(ctx, &mut tx, rows(ctx, coll, field), true).await?;
    if ids.is_empty() {
        drop(tx);
        let mut s = ctx.sql();
        s.push("SELECT COUNT(*)");
        s.append(rows(ctx, coll, field));
        return Ok(if ctx.store.query(&s).await?.scalar_int() == 0 {
            Batch::Done
        } else {
            Batch::Busy
        });
    }
    let records = crate::records::load_in_tx(ctx, &mut tx, coll, &ids).await?;
    let mut touched = Vec::with_capacity(records.len());
    for d in &records {
        let id = basalt_core::record::id_of(d);
        let u = crate::records::update_sql_of(ctx, coll, id, d, &[field])?;
        tx.execute(&u).await?;
        touched.push((coll.id.clone(), coll.updated.clone(), id.to_string()));
    }
    tx.commit().await?;
    ctx.cache.invalidate(&touched).await;
    Ok(Batch::Rewrote)
}

/// Rows left per pending change of `entries` (`[collection id, field id]`), for `/api/health`.
async fn backlog(
    ctx: &AppCtx,
    entries: impl Iterator<Item = (String, String)>,
    rows: fn(&AppCtx, &Collection, &str) -> basalt_core::sql::Sql,
) -> ServiceResult<Vec<Json>> {
    let mut out = Vec::new();
    for (c, f) in entries {
        let Some(coll) = ctx.collection(&c) else {
            continue;
        };
        let Some(field) = coll.fields.iter().find(|x| x.id == f) else {
            continue;
        };
        let mut s = ctx.sql();
        s.push("SELECT COUNT(*)");
        s.append(rows(ctx, &coll, &field.name));
        let left = ctx.store.query(&s).await?.scalar_int();
        out.push(
            serde_json::json!({"collection": coll.name, "field": field.name, "remaining": left}),
        );
    }
    Ok(out)
}

/// Replaces the data (record, before, traceparent, sealed values) of the outbox event `seq`.
async fn set_event_data(
    ctx: &AppCtx,
    tx: &mut Box<dyn basalt_store::Tx>,
    seq: Value,
    data: Json,
) -> ServiceResult<()> {
    let mut u = ctx.sql();
    u.push("UPDATE _events SET data = ")
        .bind(Value::Text(data.to_string()))
        .push(" WHERE seq = ")
        .bind(seq);
    tx.execute(&u).await?;
    Ok(())
}

/// Masks `field` in the outbox's copies of `coll`'s records (events not yet pruned, written before
/// the field was pii).
async fn mask_outbox(ctx: &AppCtx, coll: &Collection, field: &str) -> ServiceResult<()> {
    let Some(f) = coll.field(field) else {
        return Ok(());
    };
    let mut q = ctx.sql();
    q.push("SELECT seq, data FROM _events WHERE collection_id = ")
        .bind(Value::Text(coll.id.clone()));
    let rows = ctx.store.query(&q).await?;
    let mut tx = ctx.store.begin().await?;
    for r in rows.rows {
        let mut it = r.into_iter();
        let (Some(seq), Some(data)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(mut d) = serde_json::from_str::<Json>(&data.into_string()) else {
            continue;
        };
        let mut changed = false;
        for part in ["record", "before"] {
            if let Some(v) = d.get_mut(part).and_then(|r| r.get_mut(field)) {
                if !is_blank(v) && !v.as_str().is_some_and(|s| s.starts_with("pii1:")) {
                    *v = mask_value(ctx, coll, f, v);
                    changed = true;
                }
            }
        }
        if changed {
            set_event_data(ctx, &mut tx, seq, d).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Fills the blind index of `field` (just turned searchable; `coll` is the definition as stored,
/// with its new `_bi_` column) from every row's value, inside the collection update's transaction
/// and before its indexes are built: a unique index then sees every value, and a failing one changes
/// nothing. Rows are read 200 at a time in id order.
pub async fn index_existing(
    ctx: &AppCtx,
    tx: &mut Box<dyn basalt_store::Tx>,
    coll: &Collection,
    field: &str,
) -> ServiceResult<()> {
    let mut last = String::new();
    loop {
        let mut from = ctx.sql();
        from.push(" FROM ")
            .ident(&coll.name)
            .push(" WHERE ")
            .ident(field)
            .push(" != '' AND \"id\" > ")
            .bind(Value::Text(last.clone()));
        let ids = lock_batch(ctx, tx, from, false).await?;
        let Some(end) = ids.last().cloned() else {
            return Ok(());
        };
        for d in crate::records::load_in_tx(ctx, tx, coll, &ids).await? {
            let id = basalt_core::record::id_of(&d);
            tx.execute(&crate::records::update_sql_of(ctx, coll, id, &d, &[field])?)
                .await?;
        }
        last = end;
    }
}

/// `WHERE` rows of `coll` whose `field` still holds a ciphertext.
fn sealed_rows(ctx: &AppCtx, coll: &Collection, field: &str) -> basalt_core::sql::Sql {
    let mut s = ctx.sql();
    s.push(" FROM ")
        .ident(&coll.name)
        .push(" WHERE substr(")
        .ident(field)
        .push(", 1, 5) = 'pii1:'");
    s
}

/// Rows still encrypted per field whose pii is being removed, for `/api/health`.
pub async fn decryption_backlog(ctx: &AppCtx) -> ServiceResult<Vec<Json>> {
    let q = basalt_core::pii::decryptions_sql(ctx.dialect());
    let list = basalt_core::pii::parse_decryptions(ctx.store.query(&q).await?.scalar());
    backlog(ctx, list.into_iter().map(|(c, f, _)| (c, f)), sealed_rows).await
}

/// One batch of the first pending decryption (pii removed from a field): the values are written
/// back in clear through the same write path (`Pii::decrypting` stores plaintext); when none is
/// left, the field's hidden columns are dropped and its indexes rebuilt on the plain column, in one
/// transaction with the end of the entry.
async fn decrypt_once(ctx: &AppCtx) -> ServiceResult<bool> {
    if ctx.pii.is_none() {
        return Ok(false);
    }
    let q = basalt_core::pii::decryptions_sql(ctx.dialect());
    let list = basalt_core::pii::parse_decryptions(ctx.store.query(&q).await?.scalar());
    let Some((c, f, _)) = list.first().cloned() else {
        return Ok(false);
    };
    let coll = ctx.collection(&c);
    let field = coll
        .as_ref()
        .and_then(|x| {
            x.fields
                .iter()
                .find(|x| x.id == f && crate::pii::is_decrypting(x))
        })
        .map(|x| x.name.clone());
    let (Some(coll), Some(field)) = (coll, field) else {
        end_decryption(ctx, &c, &f, None).await?;
        return Ok(true);
    };
    match rewrite_batch(ctx, &coll, &field, sealed_rows).await? {
        Batch::Rewrote => Ok(true),
        Batch::Busy => Ok(false),
        Batch::Done => {
            end_decryption(ctx, &c, &f, Some(&coll)).await?;
            tracing::info!(collection = %coll.name, field = %field, "pii removed: values decrypted");
            Ok(true)
        }
    }
}

/// Drops a finished (or moot) decryption: the field's hidden columns go (`coll` as the snapshot
/// holds it, with the transient pii), then the entry.
async fn end_decryption(
    ctx: &AppCtx,
    c: &str,
    f: &str,
    coll: Option<&Collection>,
) -> ServiceResult<()> {
    let mut tx = ctx.store.begin().await?;
    if let Some(coll) = coll {
        let mut plain = coll.clone();
        if let Some(x) = plain.fields.iter_mut().find(|x| x.id == f) {
            x.pii = None;
        }
        for st in crate::ddl::alter_table(ctx.dialect(), coll, &plain) {
            tx.execute(&st).await?;
        }
    }
    let q = basalt_core::pii::decryptions_sql(ctx.dialect());
    let mut list = basalt_core::pii::parse_decryptions(tx.query(&q).await?.scalar());
    list.retain(|(x, y, _)| !(x == c && y == f));
    crate::pii::save_param(ctx, &mut tx, basalt_core::pii::DECRYPTIONS_PARAM, &list).await?;
    tx.commit().await?;
    ctx.collections_changed().await
}

async fn finish_migration(ctx: &AppCtx, c: &str, f: &str) -> ServiceResult<()> {
    let mut tx = ctx.store.begin().await?;
    let q = basalt_core::pii::migrations_sql(ctx.dialect());
    let mut list = basalt_core::pii::parse_migrations(tx.query(&q).await?.scalar());
    list.retain(|(x, y)| !(x == c && y == f));
    crate::pii::save_param(ctx, &mut tx, basalt_core::pii::MIGRATIONS_PARAM, &list).await?;
    tx.commit().await?;
    ctx.collections_changed().await
}
