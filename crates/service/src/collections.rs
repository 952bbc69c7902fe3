//! Collection management: definitions in `_collections`, real tables and indexes altered online in
//! the same transaction as the definition change.

use std::sync::Arc;

use basalt_core::schema::{Collection, CollectionType, Field, FieldType, Index};
use basalt_core::sql::Value;
use basalt_core::{Error, FieldError, FieldErrors};
use serde_json::{json, Value as Json};

use basalt_core::filter;
use basalt_core::filter::compile::{Compiler, RequestInfo, MAIN};

use basalt_store::Tx;

use crate::error::{bad, not_found, ServiceError, ServiceResult};
use crate::request::Req;
use crate::state::Collections;
use crate::{ddl, records, AppCtx};

fn invalid(fields: FieldErrors, creating: bool) -> ServiceError {
    let msg = if creating {
        "Failed to create collection."
    } else {
        "Failed to update collection."
    };
    ServiceError(Error::validation(msg, fields))
}

/// Inserts a definition and creates its table (bootstrap and create).
pub async fn insert_collection(ctx: &AppCtx, c: Collection) -> ServiceResult<Arc<Collection>> {
    let mut tx = ctx.store.begin().await?;
    let c = insert_def(ctx, &mut tx, c).await?;
    tx.commit().await?;
    ctx.collections_changed().await?;
    ctx.collection(&c.id).ok_or_else(not_found)
}

/// Inserts a definition and creates its table inside `tx`.
async fn insert_def(
    ctx: &AppCtx,
    tx: &mut Box<dyn Tx>,
    mut c: Collection,
) -> ServiceResult<Collection> {
    let now = basalt_core::time::now();
    c.created = now.clone();
    c.updated = now;
    let mut s = ctx.sql();
    s.push("INSERT INTO _collections (id, name, type, system, data, created, updated) VALUES (");
    s.bind(Value::Text(c.id.clone()))
        .push(", ")
        .bind(Value::Text(c.name.clone()))
        .push(", ");
    s.bind(Value::Text(c.kind.as_str().into()))
        .push(", ")
        .bind(Value::Bool(c.system))
        .push(", ");
    s.bind(Value::Text(c.to_storage_json().to_string()))
        .push(", ");
    s.bind(Value::Text(c.created.clone()))
        .push(", ")
        .bind(Value::Text(c.updated.clone()))
        .push(")");
    tx.execute(&s).await.map_err(|e| match e {
        basalt_store::StoreError::Unique { .. } => {
            let mut f = FieldErrors::new();
            f.insert(
                "name".into(),
                FieldError::new(
                    basalt_core::codes::COLLECTION_NAME_EXISTS,
                    "Collection name must be unique (case insensitive).",
                ),
            );
            invalid(f, true)
        }
        other => other.into(),
    })?;
    for st in ddl::create_table(ctx.dialect(), &c) {
        tx.execute(&st).await.map_err(|e| ddl_error(e, true))?;
    }
    Ok(c)
}

fn ddl_error(e: basalt_store::StoreError, creating: bool) -> ServiceError {
    let mut f = FieldErrors::new();
    let msg = match &e {
        basalt_store::StoreError::Unique { detail: d, .. } => {
            format!("Failed to create a unique index: duplicate values ({d}).")
        }
        other => format!("Failed to apply the schema change: {other}."),
    };
    tracing::warn!(error = %e, "schema change rejected by the database");
    f.insert(
        "indexes".into(),
        FieldError::new(basalt_core::codes::INVALID_INDEX_EXPRESSION, msg),
    );
    invalid(f, creating)
}

fn ensure_auth_indexes(c: &mut Collection) {
    let has = |c: &Collection, col: &str| {
        c.indexes
            .iter()
            .filter_map(|i| Index::parse(i).ok())
            .any(|i| i.unique && i.columns == [col.to_string()])
    };
    let defaults = c.default_auth_indexes();
    if !has(c, "tokenKey") {
        c.indexes.push(defaults[0].clone());
    }
    if !has(c, "email") {
        c.indexes.push(defaults[1].clone());
    }
}

/// A field of unknown type makes the whole body unreadable, as the protocol answers it.
fn check_field_types(body: &Json) -> ServiceResult<()> {
    if let Some(fields) = body.get("fields").and_then(Json::as_array) {
        for f in fields {
            let ok = f
                .get("type")
                .cloned()
                .map(serde_json::from_value::<FieldType>)
                .is_some_and(|r| r.is_ok());
            if !ok {
                return Err(bad(
                    "Failed to load the submitted data due to invalid formatting.",
                ));
            }
        }
    }
    Ok(())
}

pub async fn create(ctx: &AppCtx, body: &Json) -> ServiceResult<Arc<Collection>> {
    let mut tx = ctx.store.begin().await?;
    let c = create_in(ctx, &ctx.collections(), &mut tx, body).await?;
    tx.commit().await?;
    ctx.collections_changed().await?;
    ctx.collection(&c.id).ok_or_else(not_found)
}

/// Validates a new definition against the schema `view` and creates it inside `tx`.
async fn create_in(
    ctx: &AppCtx,
    view: &Collections,
    tx: &mut Box<dyn Tx>,
    body: &Json,
) -> ServiceResult<Collection> {
    check_field_types(body)?;
    let kind = match body.get("type") {
        None => CollectionType::Base,
        Some(t) => serde_json::from_value(t.clone()).map_err(|_| {
            let mut f = FieldErrors::new();
            f.insert(
                "type".into(),
                FieldError::new(basalt_core::codes::IN_INVALID, "Must be a valid value."),
            );
            invalid(f, true)
        })?,
    };
    let mut c = Collection::scaffold(kind, "");
    c.indexes.clear();
    // A client-provided fields list replaces the scaffold's, but system fields are kept.
    let system_fields: Vec<Field> = c.fields.clone();
    c.apply_json(body, false).map_err(|f| invalid(f, true))?;
    check_providers(&c).map_err(|f| invalid(f, true))?;
    for sf in system_fields.iter().rev() {
        if c.field(&sf.name).is_none() {
            c.fields.insert(0, sf.clone());
        } else if let Some(f) = c.fields.iter_mut().find(|f| f.name == sf.name) {
            f.system = true;
            if sf.name == "id"
                || (kind == CollectionType::Auth
                    && basalt_core::schema::AUTH_SYSTEM_FIELDS.contains(&sf.name.as_str()))
            {
                let keep_opts = f.clone();
                *f = sf.clone();
                f.hidden = keep_opts.hidden && sf.name != "id";
                if sf.name == "email" {
                    f.only_domains = keep_opts.only_domains;
                    f.except_domains = keep_opts.except_domains;
                    f.pii = keep_opts.pii;
                }
            }
        }
    }
    // The id field first; on auth collections the other system fields follow the user's fields.
    if let Some(pos) = c.fields.iter().position(|f| f.name == "id") {
        let idf = c.fields.remove(pos);
        c.fields.insert(0, idf);
    }
    if kind == CollectionType::Auth {
        let is_sys = |f: &Field| {
            basalt_core::schema::AUTH_SYSTEM_FIELDS.contains(&f.name.as_str()) && f.name != "id"
        };
        let (sys, user): (Vec<Field>, Vec<Field>) = c.fields.drain(1..).partition(is_sys);
        c.fields.extend(user);
        for name in basalt_core::schema::AUTH_SYSTEM_FIELDS {
            if let Some(f) = sys.iter().find(|f| f.name == name) {
                c.fields.push(f.clone());
            }
        }
    }
    if c.id.is_empty() {
        c.id = basalt_core::id::collection_id(kind.as_str(), &c.name);
    }
    if c.is_auth() {
        ensure_auth_indexes(&mut c);
    }
    if kind == CollectionType::View {
        if !c.view_query.is_empty() {
            c.fields = crate::views::infer(ctx, tx, view, &c.view_query, None).await?;
        }
        crate::views::only_read_rules(&mut c);
    }
    let cols = view;
    if cols
        .list
        .iter()
        .any(|x| x.name.eq_ignore_ascii_case(&c.name))
    {
        let mut f = FieldErrors::new();
        f.insert(
            "name".into(),
            FieldError::new(
                basalt_core::codes::COLLECTION_NAME_EXISTS,
                "Collection name must be unique (case insensitive).",
            ),
        );
        return Err(invalid(f, true));
    }
    c.validate(&cols.list).map_err(|f| invalid(f, true))?;
    if cols.get(&c.id).is_some() {
        let mut f = FieldErrors::new();
        f.insert(
            "id".into(),
            FieldError::new(
                basalt_core::codes::INVALID_ID,
                "The id is invalid or already exists.",
            ),
        );
        return Err(invalid(f, true));
    }
    normalize_relations(view, &mut c);
    check_rules(ctx, view, &c).map_err(|f| invalid(f, true))?;
    insert_def(ctx, tx, c).await
}

/// Compiles every rule against the new definition, so a rule naming an unknown field is rejected when
/// it is saved rather than failing every request later.
fn check_rules(ctx: &AppCtx, view: &Collections, c: &Collection) -> Result<(), FieldErrors> {
    let mut list: Vec<Arc<Collection>> =
        view.list.iter().filter(|x| x.id != c.id).cloned().collect();
    let me = Arc::new(c.clone());
    list.push(me.clone());
    let schema = crate::state::Collections::new(list).with_pii(ctx.pii.clone());
    // A stand-in caller of this collection (when it is an auth collection) so `@request.auth.*` paths resolve.
    let auth = c
        .is_auth()
        .then(|| (me.clone(), basalt_core::record::Data::new()));
    let info = basalt_core::filter::compile::RequestInfo {
        auth,
        ..Default::default()
    };
    let mut errs = FieldErrors::new();
    let mut rules: Vec<(&str, &Option<String>)> = vec![
        ("listRule", &c.list_rule),
        ("viewRule", &c.view_rule),
        ("createRule", &c.create_rule),
        ("updateRule", &c.update_rule),
        ("deleteRule", &c.delete_rule),
    ];
    if let Some(a) = &c.auth {
        rules.push(("authRule", &a.auth_rule));
        rules.push(("manageRule", &a.manage_rule));
    }
    let reveal: Vec<(String, &Option<String>)> = c
        .fields
        .iter()
        .enumerate()
        .filter_map(|(i, f)| Some((format!("fields.{i}.pii"), &f.pii.as_ref()?.reveal_rule)))
        .collect();
    for (key, _) in &reveal {
        if ctx.pii.is_none() {
            errs.insert(
                key.clone(),
                FieldError::new(
                    basalt_core::codes::INVALID_PII,
                    "The server has no PII keys: set BASALT_PII_KEYS or [pii] keys_file before marking fields pii.",
                ),
            );
        }
    }
    for (key, rule) in &reveal {
        rules.push((key.as_str(), rule));
    }
    for (key, rule) in rules {
        let Some(r) = rule.as_ref().filter(|r| !r.trim().is_empty()) else {
            continue;
        };
        let res = basalt_core::filter::parse(r)
            .map_err(|e| e.to_string())
            .and_then(|e| {
                let mut comp = basalt_core::filter::compile::Compiler::new(
                    ctx.dialect(),
                    &schema,
                    &info,
                    true,
                );
                comp.compile(c, &e).map(|_| ()).map_err(|e| e.to_string())
            });
        if let Err(e) = res {
            errs.insert(
                key.into(),
                FieldError::new(
                    basalt_core::codes::INVALID_RULE,
                    format!("Invalid rule. Raw error: {e}."),
                ),
            );
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

/// Relation fields may name their target by name; store the id.
fn normalize_relations(view: &Collections, c: &mut Collection) {
    let self_id = c.id.clone();
    let self_name = c.name.clone();
    for f in c
        .fields
        .iter_mut()
        .filter(|f| f.ty() == FieldType::Relation)
    {
        if f.collection_id == self_name {
            f.collection_id = self_id.clone();
        } else if let Some(t) = view.get(&f.collection_id) {
            f.collection_id = t.id.clone();
        }
    }
}

/// Auth options: OAuth2 providers Basalt knows; OTP/MFA durations of at least 10 s and OTP codes of
/// 4 to 16 digits.
fn check_providers(c: &Collection) -> Result<(), FieldErrors> {
    let mut errs = FieldErrors::new();
    let extra = c.auth.as_ref().map(|a| &a.extra);
    for (group, key, min, max) in [
        ("otp", "duration", 10, 31_536_000),
        ("otp", "length", 4, 16),
        ("mfa", "duration", 10, 31_536_000),
    ] {
        let v = extra.and_then(|e| e.get(group)).and_then(|g| g.get(key));
        if let Some(v) = v {
            match v.as_i64() {
                Some(n) if n < min => {
                    errs.insert(
                        format!("{group}.{key}"),
                        FieldError::new(
                            basalt_core::codes::MIN_GREATER_EQUAL_THAN_REQUIRED,
                            format!("Must be no less than {min}."),
                        )
                        .with_params(json!({"threshold": min})),
                    );
                }
                Some(n) if n > max => {
                    errs.insert(
                        format!("{group}.{key}"),
                        FieldError::new(
                            basalt_core::codes::MAX_LESS_EQUAL_THAN_REQUIRED,
                            format!("Must be no greater than {max}."),
                        )
                        .with_params(json!({"threshold": max})),
                    );
                }
                Some(_) => {}
                None => {
                    errs.insert(
                        format!("{group}.{key}"),
                        FieldError::new(basalt_core::codes::INVALID_VALUE, "Must be a number."),
                    );
                }
            }
        }
    }
    let list = c
        .auth
        .as_ref()
        .and_then(|a| a.extra.get("oauth2"))
        .and_then(|o| o.get("providers"))
        .and_then(Json::as_array);
    for (i, p) in list.into_iter().flatten().enumerate() {
        let name = p.get("name").and_then(Json::as_str).unwrap_or("");
        if !name.is_empty() && !crate::auth::oauth2::is_known_provider(name) {
            errs.insert(
                format!("oauth2.providers.{i}.name"),
                FieldError::new(
                    basalt_core::codes::INVALID_PROVIDER,
                    format!("Unknown provider {name}."),
                ),
            );
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

pub async fn update(
    ctx: &AppCtx,
    old: &Arc<Collection>,
    body: &Json,
) -> ServiceResult<Arc<Collection>> {
    let mut tx = ctx.store.begin().await?;
    let c = update_in(ctx, &ctx.collections(), &mut tx, old, body).await?;
    tx.commit().await?;
    ctx.collections_changed().await?;
    ctx.collection(&c.id).ok_or_else(not_found)
}

/// Validates a changed definition against the schema `view` and applies it inside `tx`.
async fn update_in(
    ctx: &AppCtx,
    view: &Collections,
    tx: &mut Box<dyn Tx>,
    old: &Arc<Collection>,
    body: &Json,
) -> ServiceResult<Collection> {
    check_field_types(body)?;
    let mut c: Collection = (**old).clone();
    if let Some(t) = body.get("type").and_then(Json::as_str) {
        if t != old.kind.as_str() {
            let mut f = FieldErrors::new();
            f.insert(
                "type".into(),
                FieldError::new(
                    basalt_core::codes::COLLECTION_TYPE_CHANGE,
                    "Changing the collection type is not allowed.",
                ),
            );
            return Err(invalid(f, false));
        }
    }
    if old.system
        && body
            .get("name")
            .and_then(Json::as_str)
            .is_some_and(|n| n != old.name)
    {
        let mut f = FieldErrors::new();
        f.insert(
            "name".into(),
            FieldError::new(
                basalt_core::codes::COLLECTION_SYSTEM_NAME_CHANGE,
                "System collection name cannot be changed.",
            ),
        );
        return Err(invalid(f, false));
    }
    c.apply_json(body, false).map_err(|f| invalid(f, false))?;
    check_providers(&c).map_err(|f| invalid(f, false))?;
    // Token hygiene: a changed authRule invalidates the tokens issued under the old one.
    if let (Some(a), Some(oa)) = (c.auth.as_mut(), old.auth.as_ref()) {
        if a.auth_rule != oa.auth_rule && a.auth_token.secret == oa.auth_token.secret {
            a.auth_token.secret = basalt_core::id::random_id(50);
        }
    }
    let mut errs = FieldErrors::new();
    let mut encrypting: Vec<String> = Vec::new();
    let mut decrypting: Vec<(String, bool)> = Vec::new();
    let mut indexing: Vec<String> = Vec::new();
    for (i, nf) in c.fields.iter().enumerate() {
        if let Some(of) = old.fields.iter().find(|f| f.id == nf.id) {
            if of.ty() != nf.ty() {
                errs.insert(
                    format!("fields.{i}.type"),
                    FieldError::new(
                        basalt_core::codes::FIELD_TYPE_CHANGE,
                        "Field type cannot be changed.",
                    ),
                );
            }
            let searchable = |f: &basalt_core::schema::Field| f.pii.as_ref().map(|p| p.searchable);
            let why = match (&of.pii, &nf.pii) {
                // Encrypting the existing values runs in the background (`privacy::run_migrations`);
                // a number or json column becomes TEXT first (`ddl::alter_table`).
                (None, Some(_)) => {
                    encrypting.push(nf.id.clone());
                    None
                }
                (Some(p), Some(q)) if p.decrypting && q.decrypting => None,
                (Some(p), Some(_)) if p.decrypting => Some(
                    "pii is being removed from this field (its values are being decrypted): mark it again once that is done.",
                ),
                (Some(p), Some(_)) if p.pending && searchable(of) != searchable(nf) => Some(
                    "This field's existing values are still being encrypted: change pii.searchable once that is done (see /api/health).",
                ),
                // Decrypting the values runs in the background too; the column stays TEXT until
                // then (a number or json one gets its type back at the end).
                (Some(p), None) => {
                    decrypting.push((nf.id.clone(), p.searchable));
                    None
                }
                // A blind index turned on is filled from the existing values in this transaction
                // (below), before the indexes are built; turned off, its column is dropped.
                (Some(_), Some(_)) if searchable(nf) == Some(true) && searchable(of) == Some(false) => {
                    indexing.push(nf.name.clone());
                    None
                }
                _ => None,
            };
            if let Some(why) = why {
                errs.insert(
                    format!("fields.{i}.pii"),
                    FieldError::new(basalt_core::codes::INVALID_PII, why),
                );
            }
            if of.system && of.name != nf.name {
                errs.insert(
                    format!("fields.{i}.name"),
                    FieldError::new(
                        basalt_core::codes::SYSTEM_FIELD_CHANGE,
                        "System field name cannot be changed.",
                    ),
                );
            }
        }
    }
    if !errs.is_empty() {
        return Err(invalid(errs, false));
    }
    if c.is_auth() {
        ensure_auth_indexes(&mut c);
    }
    if c.kind == CollectionType::View {
        if !c.view_query.is_empty() {
            c.fields = crate::views::infer(ctx, tx, view, &c.view_query, Some(old)).await?;
        }
        crate::views::only_read_rules(&mut c);
    }
    c.validate(&view.list).map_err(|f| invalid(f, false))?;
    normalize_relations(view, &mut c);
    check_rules(ctx, view, &c).map_err(|f| invalid(f, false))?;
    c.updated = basalt_core::time::now();
    // Fields whose pii is being removed keep their hidden columns (and blind-index indexes) until
    // their values are decrypted: the tables are altered as if they were still pii.
    let mut as_stored = c.clone();
    for (id, searchable) in &decrypting {
        if let Some(f) = as_stored.fields.iter_mut().find(|f| &f.id == id) {
            f.pii = Some(basalt_core::pii::Pii::decrypting(*searchable));
        }
    }
    if c.kind == CollectionType::View {
        // A view is replaced whole (its query and so its columns may change).
        tx.execute(&ddl::drop_table(ctx.dialect(), old)).await?;
        for st in ddl::create_table(ctx.dialect(), &c) {
            tx.execute(&st).await.map_err(|e| ddl_error(e, false))?;
        }
    } else {
        let (columns, indexes) = ddl::alter_table_steps(ctx.dialect(), old, &as_stored);
        for st in columns {
            tx.execute(&st).await.map_err(|e| ddl_error(e, false))?;
        }
        for field in &indexing {
            crate::privacy::index_existing(ctx, tx, &as_stored, field).await?;
        }
        for st in indexes {
            tx.execute(&st).await.map_err(|e| ddl_error(e, false))?;
        }
    }
    for field in encrypting {
        crate::pii::add_migration(ctx, tx, &c.id, &field).await?;
    }
    for (field, searchable) in decrypting {
        crate::pii::add_decryption(ctx, tx, &c.id, &field, searchable).await?;
    }
    let mut s = ctx.sql();
    s.push("UPDATE _collections SET name = ")
        .bind(Value::Text(c.name.clone()));
    s.push(", data = ")
        .bind(Value::Text(c.to_storage_json().to_string()));
    s.push(", updated = ").bind(Value::Text(c.updated.clone()));
    s.push(" WHERE id = ").bind(Value::Text(c.id.clone()));
    tx.execute(&s).await?;
    Ok(c)
}

pub async fn delete(ctx: &AppCtx, c: &Arc<Collection>) -> ServiceResult<()> {
    let mut tx = ctx.store.begin().await?;
    delete_in(ctx, &ctx.collections(), &mut tx, c).await?;
    tx.commit().await?;
    ctx.collections_changed().await?;
    drop_files(ctx, c).await;
    Ok(())
}

/// Drops a collection's table and definition inside `tx`, refusing while another collection of
/// `view` relates to it.
async fn delete_in(
    ctx: &AppCtx,
    view: &Collections,
    tx: &mut Box<dyn Tx>,
    c: &Collection,
) -> ServiceResult<()> {
    if c.system {
        return Err(bad("Failed to delete collection."));
    }
    for other in view.list.iter().filter(|o| o.id != c.id) {
        if other
            .fields
            .iter()
            .any(|f| f.ty() == FieldType::Relation && f.collection_id == c.id)
        {
            return Err(bad(&format!(
                "Failed to delete collection probably due to existing reference in {}.",
                other.name
            )));
        }
    }
    tx.execute(&ddl::drop_table(ctx.dialect(), c)).await?;
    let mut s = ctx.sql();
    s.push("DELETE FROM _collections WHERE id = ")
        .bind(Value::Text(c.id.clone()));
    tx.execute(&s).await?;
    Ok(())
}

/// After a collection was deleted or truncated (committed): its files folder goes.
async fn drop_files(ctx: &AppCtx, c: &Collection) {
    if !c.has_files() {
        return;
    }
    if let Err(e) = ctx.files.storage().delete_prefix(&c.id).await {
        tracing::warn!(error = %e, collection = %c.name, "could not delete the collection's files");
    }
}

pub async fn truncate(ctx: &AppCtx, c: &Arc<Collection>) -> ServiceResult<()> {
    if c.is_superusers() {
        return Err(bad("The superusers collection cannot be truncated."));
    }
    let mut tx = ctx.store.begin().await?;
    let mut s = ctx.sql();
    s.push("DELETE FROM ").ident(&c.name);
    tx.execute(&s).await?;
    tx.commit().await?;
    // Rows went without events: drop cached rows here and on every node.
    ctx.cache.clear();
    ctx.announce(basalt_cluster::bus::Msg::Collections).await;
    drop_files(ctx, c).await;
    Ok(())
}

/// `PUT /api/collections/import`: creates or updates each collection (matched by id, then name);
/// with `deleteMissing`, deletes the non-system collections not listed.
async fn savepoint(ctx: &AppCtx, tx: &mut Box<dyn Tx>, stmt: &str) -> ServiceResult<()> {
    let mut q = ctx.sql();
    q.push(stmt);
    tx.execute(&q).await?;
    Ok(())
}

/// `PUT /api/collections/import {collections, deleteMissing}`: every change in one transaction, so
/// a failed import changes nothing.
pub async fn import(ctx: &AppCtx, body: &Json) -> ServiceResult<()> {
    import_with(ctx, body, false).await
}

/// [`import`]; with `dry_run`, every change is made and checked inside the transaction, which is
/// then rolled back (`basalt schema apply --dry-run`).
pub async fn import_with(ctx: &AppCtx, body: &Json, dry_run: bool) -> ServiceResult<()> {
    let Some(list) = body
        .get("collections")
        .and_then(Json::as_array)
        .filter(|l| !l.is_empty())
    else {
        let mut f = FieldErrors::new();
        f.insert("collections".into(), FieldError::required());
        return Err(ServiceError(Error::validation(
            "An error occurred while validating the submitted data.",
            f,
        )));
    };
    let delete_missing = body
        .get("deleteMissing")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let mut tx = ctx.store.begin().await?;
    let (_, dropped) = import_in(ctx, &mut tx, list, delete_missing).await?;
    if dry_run {
        // Dropping the transaction rolls every statement back, DDL included (both databases).
        drop(tx);
        return Ok(());
    }
    tx.commit().await?;
    import_done(ctx, &dropped).await
}

/// After an import's transaction committed: the new snapshot everywhere, dropped collections'
/// files deleted.
pub async fn import_done(ctx: &AppCtx, dropped: &[Arc<Collection>]) -> ServiceResult<()> {
    ctx.collections_changed().await?;
    for c in dropped {
        drop_files(ctx, c).await;
    }
    Ok(())
}

/// The import's changes inside `tx`: answers the collections as they will be once `tx` commits,
/// and those it deleted (whose files go after the commit, see [`import_done`]). A caller may write
/// more in the same transaction (`pbimport` writes the records).
pub async fn import_in(
    ctx: &AppCtx,
    tx: &mut Box<dyn Tx>,
    list: &[Json],
    delete_missing: bool,
) -> ServiceResult<(Vec<Arc<Collection>>, Vec<Arc<Collection>>)> {
    // The schema as this import changes it, step by step, inside the transaction.
    let mut staged: Vec<Arc<Collection>> = ctx.collections().list.clone();
    let view_of = |l: &Vec<Arc<Collection>>| Collections::new(l.clone()).with_pii(ctx.pii.clone());
    let put = |l: &mut Vec<Arc<Collection>>, c: Collection| {
        let c = Arc::new(c);
        match l.iter_mut().find(|x| x.id == c.id) {
            Some(x) => *x = c,
            None => l.push(c),
        }
    };
    let find = |l: &Vec<Arc<Collection>>, item: &Json| {
        let key_id = item.get("id").and_then(Json::as_str).unwrap_or("");
        let key_name = item.get("name").and_then(Json::as_str).unwrap_or("");
        let v = view_of(l);
        v.get(key_id).or_else(|| v.get(key_name))
    };
    let mut kept = vec![];
    // Pass 1: create the new collections as shells (no relation fields, rules or indexes), so that
    // relations to collections later in the list, or in cycles, resolve in pass 2.
    for item in list {
        if find(&staged, item).is_some() {
            continue;
        }
        let mut shell = item.clone();
        if let Some(o) = shell.as_object_mut() {
            if let Some(Json::Array(fields)) = o.get_mut("fields") {
                fields.retain(|f| f.get("type").and_then(Json::as_str) != Some("relation"));
            }
            for k in [
                "indexes",
                "listRule",
                "viewRule",
                "createRule",
                "updateRule",
                "deleteRule",
                "authRule",
                "manageRule",
            ] {
                o.remove(k);
            }
        }
        // A shell that fails is reported by pass 2 with the full definition; its statements are
        // undone by a savepoint so the transaction stays usable.
        savepoint(ctx, tx, "SAVEPOINT import_shell").await?;
        match create_in(ctx, &view_of(&staged), tx, &shell).await {
            Ok(c) => {
                savepoint(ctx, tx, "RELEASE SAVEPOINT import_shell").await?;
                put(&mut staged, c);
            }
            Err(_) => savepoint(ctx, tx, "ROLLBACK TO SAVEPOINT import_shell").await?,
        }
    }
    // Pass 2: every collection gets its full definition.
    for (i, item) in list.iter().enumerate() {
        let view = view_of(&staged);
        let res = match find(&staged, item) {
            Some(e) => update_in(ctx, &view, tx, &e, item).await,
            None => create_in(ctx, &view, tx, item).await,
        };
        match res {
            Ok(c) => {
                kept.push(c.id.clone());
                put(&mut staged, c);
            }
            Err(ServiceError(Error::Validation { fields, .. })) => {
                let mut f = FieldErrors::new();
                let detail = fields
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", v.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                f.insert(
                    "collections".into(),
                    FieldError::new(
                        basalt_core::codes::COLLECTIONS_IMPORT_FAILURE,
                        format!("Failed to import collection {i}: {detail}"),
                    ),
                );
                return Err(ServiceError(Error::validation(
                    "Failed to import collections.",
                    f,
                )));
            }
            Err(e) => return Err(e),
        }
    }
    let mut dropped = vec![];
    if delete_missing {
        for c in staged.clone().iter() {
            if !c.system && !kept.contains(&c.id) {
                delete_in(ctx, &view_of(&staged), tx, c).await?;
                staged.retain(|x| x.id != c.id);
                dropped.push(c.clone());
            }
        }
    }
    Ok((staged, dropped))
}

/// The `_collections` table described as a collection, so collection lists reuse the filter compiler.
pub fn meta_collection() -> Collection {
    let mut c = Collection::scaffold(CollectionType::Base, "_collections");
    c.id = "_collections".into();
    let mut sys = Field::new("system", FieldType::Bool);
    sys.system = true;
    c.fields.extend([
        Field::new("name", FieldType::Text),
        Field::new("type", FieldType::Text),
        sys,
        Field::new("created", FieldType::Text),
        Field::new("updated", FieldType::Text),
    ]);
    c
}

/// `GET /api/collections` (superusers): a page of definitions, with the filter language over them.
pub async fn list(ctx: &AppCtx, req: &Req) -> ServiceResult<Json> {
    req.require_superuser()?;
    let (page, per_page) = crate::crud::page_params(req)?;
    let meta = meta_collection();
    let info = RequestInfo {
        auth: req
            .auth
            .as_ref()
            .map(|c| (c.collection.clone(), c.record.clone())),
        ..Default::default()
    };
    let schema = ctx.collections();
    let mut comp = Compiler::new(ctx.dialect(), schema.as_ref(), &info, true);
    let mut s = ctx.sql();
    s.push("SELECT data FROM _collections AS ").push(MAIN);
    let mut cs = ctx.sql();
    cs.push("SELECT COUNT(*) FROM _collections AS ").push(MAIN);
    let f = req.q("filter");
    if !f.trim().is_empty() {
        let e = filter::parse(f).map_err(|e| records::invalid_query("filter", &e.to_string()))?;
        let w = comp
            .compile(&meta, &e)
            .map_err(|e| records::invalid_query("filter", &e.to_string()))?;
        s.push(" WHERE ").append(w.clone());
        cs.push(" WHERE ").append(w);
    }
    let sort = filter::parse_sort(req.q("sort"))
        .map_err(|e| records::invalid_query("sort", &e.to_string()))?;
    let order = comp
        .order_by(&meta, &sort)
        .map_err(|e| records::invalid_query("sort", &e.to_string()))?;
    if !order.text.is_empty() {
        s.push(" ORDER BY ").append(order);
    } else {
        s.push(" ORDER BY created, name");
    }
    s.push(" LIMIT ")
        .bind(Value::Int(per_page))
        .push(" OFFSET ")
        .bind(Value::Int((page - 1).saturating_mul(per_page)));
    let rows = ctx.store.query(&s).await?;
    let mut items = vec![];
    for r in rows.rows {
        let text = r.into_iter().next().unwrap_or(Value::Null).into_string();
        let j: Json = serde_json::from_str(&text).map_err(Error::internal)?;
        items.push(Collection::from_storage_json(&j)?.to_json());
    }
    let total = if req.qbool("skipTotal") {
        -1
    } else {
        ctx.store.query(&cs).await?.scalar_int()
    };
    let total_pages = if total < 0 {
        -1
    } else {
        (total + per_page - 1) / per_page
    };
    let mut out = json!({"items": items, "page": page, "perPage": per_page, "totalItems": total, "totalPages": total_pages});
    let f = req.q("fields");
    if !f.is_empty() {
        if let Some(items) = out.get_mut("items") {
            records::pick_fields(items, f);
        }
    }
    Ok(out)
}

/// `GET /api/collections/meta/scaffolds` (superusers): blank definitions of each type.
pub fn scaffolds(req: &Req) -> ServiceResult<Json> {
    req.require_superuser()?;
    let mut base = Collection::scaffold(CollectionType::Base, "");
    base.list_rule = None;
    let auth_c = Collection::scaffold(CollectionType::Auth, "");
    let mut view = Collection::scaffold(CollectionType::Base, "").to_json();
    if let Some(o) = view.as_object_mut() {
        o.insert("type".into(), json!("view"));
        o.insert("viewQuery".into(), json!(""));
        o.insert("fields".into(), json!([]));
    }
    Ok(records::shape(
        &req.query,
        json!({"auth": auth_c.to_json(), "base": base.to_json(), "view": view}),
    ))
}
