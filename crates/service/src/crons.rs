//! Scheduled jobs and PocketBase's crons API (`GET /api/crons`, `POST /api/crons/{id}`). The
//! built-in jobs carry PocketBase's ids and schedules: `__pbDBOptimize__` (daily: SQLite's `PRAGMA
//! optimize`, PostgreSQL's `ANALYZE`), `__pbMFACleanup__` and `__pbOTPCleanup__` (hourly: MFA sessions
//! and OTPs past their collection's duration), `__pbLogsCleanup__` (every 6 h: request logs past
//! `logs.maxDays`), and `__pbAutoBackup__` while `backups.cron` is set. Basalt's own:
//! `__basaltOutboxPrune__` (events every sink has delivered; listed while the event bus runs; the
//! pruner loop runs this pass every `[events] prune_ms`, so the scheduler does not) and
//! `__basaltPiiRotate__` (daily, with a PII key ring: finishes a key rotation, rewrapping the data
//! keys still under a non-primary master key; nothing to do when there is no backlog).
//!
//! The scheduler runs on nodes whose role runs the pruner (auto backups: the backup scheduler); on a
//! cluster each scheduled run is claimed once through a `_params` row per job, so one node runs it.
//! `POST /api/crons/{id}` runs the job at once on the node that receives it.

use std::time::Duration;

use basalt_core::sql::Value;
use basalt_core::{Error, FieldError, FieldErrors};
use serde_json::{json, Value as Json};

use crate::cron::Cron;
use crate::error::{ServiceError, ServiceResult};
use crate::request::Req;
use crate::roles::Module;
use crate::AppCtx;

pub const DB_OPTIMIZE: &str = "__pbDBOptimize__";
pub const MFA_CLEANUP: &str = "__pbMFACleanup__";
pub const OTP_CLEANUP: &str = "__pbOTPCleanup__";
pub const LOGS_CLEANUP: &str = "__pbLogsCleanup__";
pub const AUTO_BACKUP: &str = "__pbAutoBackup__";
pub const OUTBOX_PRUNE: &str = "__basaltOutboxPrune__";
pub const PII_ROTATE: &str = "__basaltPiiRotate__";

/// A job and its five-field schedule (UTC).
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: &'static str,
    pub expression: String,
}

/// The jobs of this application, in PocketBase's order.
pub fn jobs(ctx: &AppCtx) -> Vec<Job> {
    let mut v = vec![
        Job {
            id: DB_OPTIMIZE,
            expression: "0 0 * * *".into(),
        },
        Job {
            id: MFA_CLEANUP,
            expression: "0 * * * *".into(),
        },
        Job {
            id: OTP_CLEANUP,
            expression: "0 * * * *".into(),
        },
        Job {
            id: LOGS_CLEANUP,
            expression: "0 */6 * * *".into(),
        },
    ];
    if ctx.events.get().is_some() {
        v.push(Job {
            id: OUTBOX_PRUNE,
            expression: "* * * * *".into(),
        });
    }
    if ctx.pii.is_some() {
        v.push(Job {
            id: PII_ROTATE,
            expression: "30 3 * * *".into(),
        });
    }
    let cron = ctx.config().backups.cron.clone();
    if !cron.trim().is_empty() {
        v.push(Job {
            id: AUTO_BACKUP,
            expression: cron,
        });
    }
    v
}

/// `GET /api/crons` (superusers): `[{id, expression}]`.
pub fn api_list(ctx: &AppCtx, req: &Req) -> ServiceResult<Json> {
    req.require_superuser()?;
    Ok(Json::Array(
        jobs(ctx)
            .into_iter()
            .map(|j| json!({"id": j.id, "expression": j.expression}))
            .collect(),
    ))
}

/// `POST /api/crons/{id}` (superusers): runs the job now, on this node.
pub async fn api_run(ctx: &AppCtx, req: &Req, id: &str) -> ServiceResult<()> {
    req.require_superuser()?;
    let Some(job) = jobs(ctx).into_iter().find(|j| j.id == id) else {
        return Err(ServiceError(Error::NotFound(
            "Missing or invalid cron job.".into(),
        )));
    };
    run(ctx, job.id).await
}

/// Runs one job.
pub async fn run(ctx: &AppCtx, id: &str) -> ServiceResult<()> {
    let began = std::time::Instant::now();
    let res = match id {
        DB_OPTIMIZE => optimize(ctx).await,
        MFA_CLEANUP => crate::auth::mfa::prune_expired(ctx, "_mfas", "mfa", 600)
            .await
            .map(|_| ()),
        OTP_CLEANUP => crate::auth::mfa::prune_expired(ctx, "_otps", "otp", 180)
            .await
            .map(|_| ()),
        LOGS_CLEANUP => match ctx.logs.get() {
            Some(l) => l.prune(ctx.config().logs.max_days).await.map(|_| ()),
            None => Ok(()),
        },
        OUTBOX_PRUNE => match ctx.events.get() {
            Some(bus) => bus.prune_now().await.map(|_| ()).map_err(Into::into),
            None => Ok(()),
        },
        PII_ROTATE => crate::privacy::run_rotation(ctx).await,
        AUTO_BACKUP if !ctx.store.can_backup() => {
            Err(crate::error::bad(crate::backups::PG_MESSAGE))
        }
        AUTO_BACKUP => {
            let keep = ctx.config().backups.cron_max_keep.max(1) as usize;
            crate::backups::scheduled(ctx, keep).await
        }
        other => Err(ServiceError(Error::NotFound(format!("no job {other}")))),
    };
    match &res {
        Ok(()) => tracing::info!(
            job = id,
            ms = began.elapsed().as_millis() as u64,
            "cron job ran"
        ),
        Err(e) => tracing::warn!(job = id, error = %e.0, "cron job failed"),
    }
    res
}

/// `__pbDBOptimize__`: lets the database refresh its planner statistics.
async fn optimize(ctx: &AppCtx) -> ServiceResult<()> {
    let mut q = ctx.sql();
    q.push(match ctx.dialect() {
        basalt_core::sql::Dialect::Sqlite => "PRAGMA optimize",
        basalt_core::sql::Dialect::Postgres => "ANALYZE",
    });
    let mut tx = ctx.store.begin().await?;
    tx.execute(&q).await?;
    tx.commit().await?;
    Ok(())
}

/// Whether this node runs the job on schedule (its role's modules).
fn scheduled_here(ctx: &AppCtx, id: &str) -> bool {
    match id {
        AUTO_BACKUP => ctx.target.runs(Module::BackupScheduler) && ctx.store.can_backup(),
        // The pruner loop runs it every `prune_ms` already.
        OUTBOX_PRUNE => false,
        _ => ctx.target.runs(Module::Pruner),
    }
}

/// Runs the jobs on their schedules: wakes each minute (UTC), and runs each job whose expression
/// matches and whose run this node claims.
pub async fn run_scheduler(ctx: AppCtx) {
    let mut last = String::new();
    loop {
        let now = chrono::Utc::now();
        let wait = 60 - (now.timestamp() % 60) as u64;
        tokio::time::sleep(Duration::from_secs(wait.max(1))).await;
        let now = chrono::Utc::now();
        let minute = now.format("%Y%m%d%H%M").to_string();
        if minute == last {
            continue;
        }
        last.clone_from(&minute);
        for job in jobs(&ctx) {
            if !scheduled_here(&ctx, job.id) {
                continue;
            }
            let Some(cron) = Cron::parse(&job.expression) else {
                continue;
            };
            if !cron.matches(&now) {
                continue;
            }
            match claim(&ctx, job.id, &minute).await {
                Ok(true) => {
                    let _ = run(&ctx, job.id).await;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(job = job.id, error = %e.0, "claiming a cron run failed"),
            }
        }
    }
}

/// Claims the run of `job` at `minute` (`YYYYmmddHHMM`) for this node: `false` when another node
/// already did. The claim is the `_params` row `cron:<job>`, advanced inside a transaction that
/// locks it (SQLite: the writer; PostgreSQL: `FOR UPDATE`, and the primary key against two first
/// inserts).
pub async fn claim(ctx: &AppCtx, job: &str, minute: &str) -> ServiceResult<bool> {
    let key = format!("cron:{job}");
    let mut tx = ctx.store.begin().await?;
    let mut q = ctx.sql();
    q.push("SELECT value FROM _params WHERE key = ")
        .bind(Value::Text(key.clone()));
    if ctx.dialect() == basalt_core::sql::Dialect::Postgres {
        q.push(" FOR UPDATE");
    }
    let rows = tx.query(&q).await?;
    let mut w = ctx.sql();
    match rows.rows.first() {
        Some(r) => {
            if r[0].as_str().unwrap_or("") >= minute {
                return Ok(false);
            }
            w.push("UPDATE _params SET value = ")
                .bind(Value::Text(minute.to_string()))
                .push(" WHERE key = ")
                .bind(Value::Text(key));
        }
        None => {
            w.push("INSERT INTO _params (key, value) VALUES (")
                .bind(Value::Text(key))
                .push(", ")
                .bind(Value::Text(minute.to_string()))
                .push(")");
        }
    }
    match tx.execute(&w).await {
        Ok(_) => {}
        Err(basalt_store::StoreError::Unique { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    match tx.commit().await {
        Ok(()) => Ok(true),
        Err(basalt_store::StoreError::Unique { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `POST /api/settings/test/s3` (superusers) `{filesystem: "storage" | "backups"}`: writes and deletes
/// a small object in that bucket; 204, or 400 with the storage's error.
pub async fn test_s3(ctx: &AppCtx, req: &Req, body: &Json) -> ServiceResult<()> {
    req.require_superuser()?;
    const FAILED: &str = "Failed to test the S3 filesystem.";
    let fs = body.get("filesystem").and_then(Json::as_str).unwrap_or("");
    if fs.is_empty() || !["storage", "backups"].contains(&fs) {
        let mut f = FieldErrors::new();
        f.insert(
            "filesystem".into(),
            if fs.is_empty() {
                FieldError::required()
            } else {
                FieldError::new(basalt_core::codes::IN_INVALID, "Must be a valid value.")
            },
        );
        return Err(ServiceError(Error::validation(FAILED, f)));
    }
    let s3 = if fs == "storage" {
        ctx.settings().get("s3").cloned().unwrap_or_default()
    } else {
        ctx.config().backups.s3.clone()
    };
    let raw = |m: String| ServiceError(Error::BadRequest(format!("{FAILED} Raw error: \n{m}")));
    let Some(c) = crate::files::S3Config::from_settings(&s3) else {
        return Err(raw(format!("S3 {fs} filesystem is not enabled.")));
    };
    let st = crate::files::Storage::s3(&c).map_err(raw)?;
    let key = format!(
        "basalt_settings_test_{}/test.txt",
        basalt_core::id::random_id(5)
    );
    st.put_bytes(&key, bytes::Bytes::from_static(b"test"))
        .await
        .map_err(|e| raw(format!("failed to upload a test file: {e}")))?;
    st.delete(&key)
        .await
        .map_err(|e| raw(format!("failed to delete a test file: {e}")))?;
    Ok(())
}
