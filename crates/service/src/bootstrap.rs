//! First start: system tables, the `_superusers` and `users` collections, settings; later starts: load.

use std::sync::Arc;

use basalt_core::schema::{Collection, CollectionType, Field, FieldType};
use basalt_core::sql::Value;
use serde_json::{json, Value as Json};

use crate::error::ServiceResult;
use crate::{collections, ddl, settings, AppCtx};

pub async fn run(ctx: &AppCtx) -> ServiceResult<()> {
    // Nodes of a cluster may start together: a lost race on creating a table or a default collection
    // shows as a unique violation; the next attempt finds the other node's work done.
    let mut attempt = 0;
    loop {
        match run_once(ctx).await {
            Err(e) if attempt < 5 && ctx.dialect() == basalt_core::sql::Dialect::Postgres => {
                attempt += 1;
                tracing::info!(error = %e.0, attempt, "bootstrap raced another node; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
            }
            r => return r,
        }
    }
}

async fn run_once(ctx: &AppCtx) -> ServiceResult<()> {
    let mut tx = ctx.store.begin().await?;
    for s in ddl::system_tables(ctx.dialect()) {
        tx.execute(&s).await?;
    }
    tx.commit().await?;
    for (table, column, def) in basalt_events::outbox::added_columns(ctx.dialect()) {
        basalt_events::outbox::add_column(ctx.store.as_ref(), table, column, def).await?;
    }
    ctx.reload_collections().await?;
    if ctx.collection("_superusers").is_none() {
        let mut su = Collection::scaffold(CollectionType::Auth, "_superusers");
        su.id = basalt_core::id::collection_id("auth", "_superusers");
        su.system = true;
        su.indexes = su.default_auth_indexes();
        su.fields.extend(Collection::autodate_fields());
        collections::insert_collection(ctx, su).await?;
    }
    if ctx.collection("users").is_none() {
        let mut u = Collection::scaffold(CollectionType::Auth, "users");
        u.id = "_pb_users_auth_".into();
        let mut name = Field::new("name", FieldType::Text);
        name.max = json!(255);
        let mut avatar = Field::new("avatar", FieldType::File);
        avatar.max_select = 1;
        avatar.mime_types = vec![
            "image/jpeg".into(),
            "image/png".into(),
            "image/svg+xml".into(),
            "image/gif".into(),
            "image/webp".into(),
        ];
        u.fields.push(name);
        u.fields.push(avatar);
        u.fields.extend(Collection::autodate_fields());
        u.indexes = u.default_auth_indexes();
        let own = Some("id = @request.auth.id".to_string());
        u.list_rule = own.clone();
        u.view_rule = own.clone();
        u.create_rule = Some(String::new());
        u.update_rule = own.clone();
        u.delete_rule = own;
        collections::insert_collection(ctx, u).await?;
    }
    for c in auth_system_collections() {
        if ctx.collection(&c.name).is_none() {
            collections::insert_collection(ctx, c).await?;
        }
    }
    if ctx.collection(basalt_events::PII_AUDIT).is_none() {
        collections::insert_collection(ctx, pii_audit_collection()).await?;
    }
    settings::load(ctx).await?;
    Ok(())
}

pub use crate::state::AUTH_SYSTEM;

fn auth_system_collections() -> Vec<Collection> {
    let owner = "@request.auth.id != '' && recordRef = @request.auth.id && collectionRef = @request.auth.collectionId";
    let text = |n: &str, hidden: bool| {
        let mut f = Field::new(n, FieldType::Text);
        f.system = true;
        f.required = !hidden;
        f.hidden = hidden;
        f
    };
    let build = |name: &str, mut fields: Vec<Field>, uniq: &[&str], owner_rules: bool| {
        let mut c = Collection::scaffold(CollectionType::Base, name);
        c.id = basalt_core::id::collection_id("base", name);
        c.system = true;
        fields.insert(0, text("collectionRef", false));
        fields.insert(1, text("recordRef", false));
        c.fields.extend(fields);
        c.fields.extend(Collection::autodate_fields());
        c.indexes = vec![format!(
            "CREATE INDEX `idx_{}_owner` ON `{name}` (`collectionRef`, `recordRef`)",
            c.id
        )];
        if !uniq.is_empty() {
            let cols: Vec<String> = uniq.iter().map(|u| format!("`{u}`")).collect();
            c.indexes.push(format!(
                "CREATE UNIQUE INDEX `idx_{}_unique` ON `{name}` ({})",
                c.id,
                cols.join(", ")
            ));
        }
        if owner_rules {
            c.list_rule = Some(owner.to_string());
            c.view_rule = Some(owner.to_string());
            c.delete_rule = Some(owner.to_string());
        }
        c
    };
    let mut otp_pw = Field::new("password", FieldType::Password);
    otp_pw.system = true;
    otp_pw.hidden = true;
    let mut confirmed = Field::new("confirmed", FieldType::Bool);
    confirmed.system = true;
    vec![
        build(
            "_externalAuths",
            vec![text("provider", false), text("providerId", false)],
            &["collectionRef", "provider", "providerId"],
            true,
        ),
        build("_mfas", vec![text("method", false)], &[], false),
        build("_otps", vec![otp_pw, text("sentTo", false)], &[], false),
        build(
            "_authOrigins",
            vec![text("fingerprint", false)],
            &["collectionRef", "recordRef", "fingerprint"],
            true,
        ),
        build(
            "_totps",
            vec![
                text("secret", true),
                confirmed,
                text("recoveryCodes", true),
                text("lastStep", true),
            ],
            &["collectionRef", "recordRef"],
            false,
        ),
    ]
}

/// `_piiAudit`: one row per record whose pii values were revealed to a caller (who, which fields,
/// the route, the client IP, the reason given, how many times within the writer's batch); superusers
/// read it, nobody writes it through the API.
fn pii_audit_collection() -> Collection {
    let name = basalt_events::PII_AUDIT;
    let mut c = Collection::scaffold(CollectionType::Base, name);
    c.id = basalt_core::id::collection_id("base", name);
    c.system = true;
    for n in [
        "collectionRef",
        "recordRef",
        "fields",
        "actor",
        "route",
        "ip",
        "reason",
    ] {
        let mut f = Field::new(n, FieldType::Text);
        f.system = true;
        c.fields.push(f);
    }
    // Identical reveals gathered in one write (same caller, record, fields, route) are one row.
    let mut count = Field::new("count", FieldType::Number);
    count.system = true;
    c.fields.push(count);
    c.fields.extend(Collection::autodate_fields());
    c.indexes = vec![format!(
        "CREATE INDEX `idx_{}_record` ON `{name}` (`collectionRef`, `recordRef`)",
        c.id
    )];
    c
}

/// Creates or updates a superuser (the CLI's `superuser upsert`).
pub async fn upsert_superuser(ctx: &AppCtx, email: &str, password: &str) -> ServiceResult<()> {
    save_superuser(ctx, email, password, Save::Upsert).await
}

/// What [`save_superuser`] may do (the CLI's `create`, `update`, `upsert`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Save {
    Create,
    Update,
    Upsert,
}

/// Deletes the superuser `email` (never the last one); `false` when there is none.
pub async fn delete_superuser(ctx: &AppCtx, email: &str) -> ServiceResult<bool> {
    let Some(id) = superuser_id(ctx, email).await? else {
        return Ok(false);
    };
    let mut c = ctx.sql();
    c.push("SELECT COUNT(*) FROM \"_superusers\"");
    if ctx.store.query(&c).await?.scalar_int() <= 1 {
        return Err(crate::error::bad(&format!(
            "failed to delete superuser \"{email}\": You can't delete the only existing superuser."
        )));
    }
    let coll = ctx
        .collection("_superusers")
        .ok_or_else(|| crate::error::bad("missing _superusers"))?;
    let id = id.into_string();
    // The server acts as a superuser (the CLI): the rule is not asked.
    let info = basalt_core::filter::compile::RequestInfo {
        auth: Some((coll.clone(), basalt_core::record::Data::new())),
        context: "default".into(),
        route: "CLI superuser delete".into(),
        ..Default::default()
    };
    crate::records::delete(ctx, &coll, &id, &info).await?;
    Ok(true)
}

async fn superuser_id(ctx: &AppCtx, email: &str) -> ServiceResult<Option<Value>> {
    let mut q = ctx.sql();
    q.push("SELECT \"id\" FROM \"_superusers\" WHERE LOWER(\"email\") = LOWER(")
        .bind(Value::Text(email.into()))
        .push(")");
    Ok(ctx.store.query(&q).await?.scalar())
}

/// Creates and/or updates the superuser `email` with `password`, as `mode` allows.
pub async fn save_superuser(
    ctx: &AppCtx,
    email: &str,
    password: &str,
    mode: Save,
) -> ServiceResult<()> {
    let coll: Arc<Collection> = ctx
        .collection("_superusers")
        .ok_or_else(|| crate::error::bad("missing _superusers"))?;
    if !basalt_core::record::is_email(email) {
        return Err(crate::error::bad("Invalid email address."));
    }
    if password.chars().count() < 8 {
        return Err(crate::error::bad(
            "The password must be at least 8 characters.",
        ));
    }
    let existing = superuser_id(ctx, email).await?;
    match (mode, &existing) {
        (Save::Create, Some(_)) => {
            return Err(crate::error::bad(
                "failed to create new superuser account: email: Value must be unique.",
            ))
        }
        (Save::Update, None) => {
            return Err(crate::error::bad(&format!(
                "superuser with email \"{email}\" doesn't exist"
            )))
        }
        _ => {}
    }
    let hash = crate::auth::hash_password_blocking(password.to_string()).await?;
    let mut tx = ctx.store.begin().await?;
    let now = basalt_core::time::now();
    match existing {
        Some(id) => {
            let mut s = ctx.sql();
            s.push("UPDATE \"_superusers\" SET \"password\" = ")
                .bind(Value::Text(hash));
            s.push(", \"tokenKey\" = ")
                .bind(Value::Text(basalt_core::id::random_id(50)));
            s.push(", \"updated\" = ")
                .bind(Value::Text(now))
                .push(" WHERE \"id\" = ")
                .bind(id);
            tx.execute(&s).await?;
        }
        None => {
            let mut data = basalt_core::record::Data::new();
            for f in &coll.fields {
                data.insert(f.name.clone(), basalt_core::record::zero(f));
            }
            data.insert("id".into(), Json::String(basalt_core::id::new_record_id()));
            data.insert("email".into(), Json::String(email.into()));
            data.insert("password".into(), Json::String(hash));
            data.insert(
                "tokenKey".into(),
                Json::String(basalt_core::id::random_id(50)),
            );
            data.insert("verified".into(), Json::Bool(true));
            data.insert("created".into(), Json::String(now.clone()));
            data.insert("updated".into(), Json::String(now));
            let s = crate::records::insert_sql(ctx, &coll, &data)?;
            tx.execute(&s).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}
