//! Backups (the protocol's `/api/backups`): a zip holding `data.db` (a consistent online snapshot of
//! the SQLite database, taken while writes go on) and, with local file storage, the `storage/` folder.
//! Kept in `<data dir>/backups`, or in the bucket of `backups.s3` when enabled. A scheduled backup
//! runs when `backups.cron` matches (UTC), keeping the newest `backups.cronMaxKeep` automatic ones.
//!
//! **Invariants:**
//! - A backup contains every write acknowledged before it started (the snapshot reads one committed
//!   state) and every file those records name: file deletions are held back while it runs.
//! - Restore replaces the database content in place under the writer lock (readers switch at their
//!   next read), except the event outbox and sink cursors, which keep their live rows so delivery
//!   positions stay valid; then the caches (collections, settings) are reloaded.
//! - One backup or restore at a time.
//! - PostgreSQL: every endpoint answers 400 naming the database's own tooling.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use basalt_core::{Error, FieldError, FieldErrors};
use futures_util::StreamExt;
use serde_json::{json, Value as Json};
use tokio::io::AsyncWriteExt;

use crate::auth::TokenKind;
use crate::error::{bad, ServiceError, ServiceResult};
use crate::files::upload::Upload;
use crate::files::{S3Config, Storage};
use crate::request::Req;
use crate::AppCtx;

/// Tables a restore leaves as they are live: the outbox and the sinks' positions in it.
/// And the PII erasure list: a subject erased after the backup was taken stays erased.
pub const KEEP_ON_RESTORE: [&str; 5] = [
    "_events",
    "_event_cursors",
    "_webhooks",
    "_webhook_deliveries",
    crate::privacy::ERASURES,
];

pub(crate) const PG_MESSAGE: &str = "Backups are not available with PostgreSQL: back the database up with its own tooling (pg_dump, or base backups with WAL archiving).";
const BUSY: &str = "Try again later - another backup/restore process has already been started.";
const AUTO_PREFIX: &str = "@auto_pb_backup_";

pub use crate::state::Backups;

/// The storage backups go to.
fn storage(ctx: &AppCtx) -> ServiceResult<Storage> {
    match S3Config::from_settings(&ctx.config().backups.s3) {
        Some(c) => {
            Storage::s3(&c).map_err(|e| ServiceError(Error::internal(format!("backups s3: {e}"))))
        }
        None => Storage::local(&ctx.files.data_dir.join("backups"))
            .map_err(|e| ServiceError(Error::internal(format!("backups folder: {e}")))),
    }
}

/// Superusers only, and SQLite only.
pub fn guard(ctx: &AppCtx, req: &Req) -> ServiceResult<()> {
    req.require_superuser()?;
    if !ctx.store.can_backup() {
        return Err(bad(PG_MESSAGE));
    }
    Ok(())
}

/// A name `POST /api/backups` accepts: `^[a-z0-9_-]+\.zip$`, at most 150 characters.
fn valid_name(k: &str) -> bool {
    k.len() <= 150
        && k.strip_suffix(".zip").is_some_and(|b| {
            !b.is_empty()
                && b.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
        })
}

/// A key that can name a backup object (uploads keep their client file name): one path segment.
fn safe_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 255
        && !k.starts_with('.')
        && !k.chars().any(|c| c == '/' || c == '\\' || c.is_control())
}

fn validation(field: &str, code: &str, msg: &str, params: Option<Json>) -> ServiceError {
    let mut f = FieldErrors::new();
    let mut e = FieldError::new(code, msg);
    if let Some(p) = params {
        e = e.with_params(p);
    }
    f.insert(field.into(), e);
    ServiceError(Error::validation(
        "An error occurred while validating the submitted data.",
        f,
    ))
}

/// The automatic name: `pb_backup_<app name in snake case, ≤50>_<UTC YYYYMMDDHHMMSS>.zip`.
fn auto_name(ctx: &AppCtx, prefix: &str) -> String {
    let app = ctx.config().meta.app_name.clone();
    let snake: String = crate::files::snake_case(&app).chars().take(50).collect();
    let ts = chrono::Utc::now().format("%Y%m%d%H%M%S");
    if snake.is_empty() {
        format!("{prefix}{ts}.zip")
    } else {
        format!("{prefix}{snake}_{ts}.zip")
    }
}

/// `GET /api/backups`.
pub async fn list(ctx: &AppCtx, req: &Req) -> ServiceResult<Json> {
    guard(ctx, req)?;
    let st = storage(ctx)?;
    let mut items: Vec<_> = st
        .list("")
        .await
        .map_err(|e| ServiceError(Error::internal(e.to_string())))?
        .into_iter()
        .filter(|m| safe_key(m.location.as_ref()))
        .collect();
    items.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
    let out: Vec<Json> = items
        .into_iter()
        .map(|m| {
            json!({
                "key": m.location.as_ref(),
                "size": m.size,
                "modified": m.last_modified.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string(),
            })
        })
        .collect();
    Ok(Json::Array(out))
}

/// `POST /api/backups` `{name?}`.
pub async fn create(ctx: &AppCtx, req: &Req, body: &Json) -> ServiceResult<()> {
    guard(ctx, req)?;
    let name = body
        .get("name")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string();
    let name = if name.is_empty() {
        auto_name(ctx, "pb_backup_")
    } else {
        if name.len() > 150 {
            return Err(validation(
                "name",
                basalt_core::codes::LENGTH_OUT_OF_RANGE,
                "The length must be between 1 and 150.",
                Some(json!({"max": 150, "min": 1})),
            ));
        }
        if !valid_name(&name) {
            return Err(validation(
                "name",
                basalt_core::codes::MATCH_INVALID,
                "Must be in a valid format.",
                None,
            ));
        }
        let st = storage(ctx)?;
        if st.head(&name).await.ok().flatten().is_some() {
            return Err(validation(
                "name",
                basalt_core::codes::BACKUP_NAME_EXISTS,
                "The backup file name is invalid or already exists.",
                None,
            ));
        }
        name
    };
    let st = storage(ctx)?;
    let Ok(_lock) = ctx.backups.running.try_lock() else {
        return Err(bad(BUSY));
    };
    make(ctx, &st, &name).await?;
    Ok(())
}

/// Takes a backup named `name` into `st` (the caller holds the backup lock).
async fn make(ctx: &AppCtx, st: &Storage, name: &str) -> ServiceResult<()> {
    let tmp = ctx.files.tmp_dir();
    let id = basalt_core::id::random_id(12);
    let db = tmp.join(format!("backup-{id}.db"));
    let zip = tmp.join(format!("backup-{id}.zip"));
    ctx.files.hold_deletions();
    let r = async {
        ctx.store.snapshot(&db).await?;
        let files_root = ctx.files.storage().local_root().map(Path::to_path_buf);
        let (db2, zip2) = (db.clone(), zip.clone());
        tokio::task::spawn_blocking(move || write_zip(&db2, files_root.as_deref(), &zip2))
            .await
            .map_err(|e| ServiceError(Error::internal(e.to_string())))?
            .map_err(|e| ServiceError(Error::internal(format!("writing the backup: {e}"))))?;
        Ok::<_, ServiceError>(())
    }
    .await;
    ctx.files.release_held().await;
    let _ = std::fs::remove_file(&db);
    let r = match r {
        Ok(()) => st
            .put_file(name, &zip)
            .await
            .map_err(|e| ServiceError(Error::internal(format!("storing the backup: {e}")))),
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&zip);
    r
}

fn write_zip(db: &Path, files: Option<&Path>, out: &Path) -> std::io::Result<()> {
    use zip::write::SimpleFileOptions;
    let f = std::fs::File::create(out)?;
    let mut z = zip::ZipWriter::new(std::io::BufWriter::new(f));
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    z.start_file("data.db", opts)
        .map_err(std::io::Error::other)?;
    std::io::copy(&mut std::fs::File::open(db)?, &mut z)?;
    if let Some(root) = files {
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                let ft = e.file_type()?;
                if ft.is_dir() {
                    stack.push(p);
                } else if ft.is_file() {
                    let rel = p
                        .strip_prefix(root)
                        .map_err(std::io::Error::other)?
                        .to_string_lossy()
                        .replace('\\', "/");
                    // object_store's in-flight multipart files and anything hidden stay out.
                    if rel
                        .split('/')
                        .any(|s| s.starts_with('.') || s.contains('#'))
                    {
                        continue;
                    }
                    z.start_file(format!("storage/{rel}"), opts)
                        .map_err(std::io::Error::other)?;
                    // A file deleted meanwhile is not one a backed-up record names (deletions wait).
                    if let Ok(mut src) = std::fs::File::open(&p) {
                        std::io::copy(&mut src, &mut z)?;
                    }
                }
            }
        }
    }
    z.finish().map_err(std::io::Error::other)?.flush()?;
    Ok(())
}

/// `POST /api/backups/upload` (multipart `file`).
/// The transport calls [`guard`] before reading the body, then this with the body's uploads.
pub async fn upload(ctx: &AppCtx, req: &Req, uploads: Vec<Upload>) -> ServiceResult<()> {
    guard(ctx, req)?;
    let file_err = |code: &str, msg: &str| validation("file", code, msg, None);
    let Some(up) = uploads.into_iter().find(|u| u.part == "file") else {
        return Err(file_err(basalt_core::codes::REQUIRED, "Cannot be blank."));
    };
    if up.mime != "application/zip" {
        return Err(file_err(
            basalt_core::codes::INVALID_MIME_TYPE,
            &format!(
                "\"{}\" mime type must be one of: application/zip.",
                crate::files::stored_name(&up.original, &up.mime)
            ),
        ));
    }
    let name = up
        .original
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .to_string();
    if !safe_key(&name) {
        return Err(file_err(
            basalt_core::codes::INVALID_FILE_NAME,
            "Invalid backup file name.",
        ));
    }
    let st = storage(ctx)?;
    if st.head(&name).await.ok().flatten().is_some() {
        return Err(file_err(
            basalt_core::codes::BACKUP_NAME_EXISTS,
            "Backup file with the specified name already exists.",
        ));
    }
    st.put_file(&name, &up.path)
        .await
        .map_err(|e| ServiceError(Error::internal(e.to_string())))?;
    Ok(())
}

/// `DELETE /api/backups/{key}`.
pub async fn delete(ctx: &AppCtx, req: &Req, key: &str) -> ServiceResult<()> {
    guard(ctx, req)?;
    let st = storage(ctx)?;
    if !safe_key(key) || st.head(key).await.ok().flatten().is_none() {
        return Err(bad(&format!(
            "Invalid or already deleted backup file. Raw error: \n[key: {key}] resource not found."
        )));
    }
    let Ok(_lock) = ctx.backups.running.try_lock() else {
        return Err(bad(
            "The backup is currently being used and cannot be deleted.",
        ));
    };
    st.delete(key)
        .await
        .map_err(|e| ServiceError(Error::internal(e.to_string())))?;
    Ok(())
}

/// `GET /api/backups/{key}?token=<superuser file token>`: the storage holding backup `key`, for the
/// transport to stream (the token is a superuser's `file` token; the Authorization header does not
/// count, so a plain link works).
pub async fn download(ctx: &AppCtx, token: &str, key: &str) -> ServiceResult<Storage> {
    let ok = match crate::auth::verify_typed_token(ctx, token, TokenKind::File).await {
        Some((c, _, _)) => c.is_superusers(),
        None => false,
    };
    if !ok {
        return Err(ServiceError(Error::Forbidden(
            "Insufficient permissions to access the resource.".into(),
        )));
    }
    if !ctx.store.can_backup() {
        return Err(bad(PG_MESSAGE));
    }
    let st = storage(ctx)?;
    if !safe_key(key) {
        return Err(ServiceError(Error::not_found()));
    }
    Ok(st)
}

/// `POST /api/backups/{key}/restore`.
pub async fn restore(ctx: &AppCtx, req: &Req, key: &str) -> ServiceResult<()> {
    guard(ctx, req)?;
    let st = storage(ctx)?;
    if !safe_key(key) || st.head(key).await.ok().flatten().is_none() {
        return Err(bad("Missing or invalid backup file."));
    }
    let Ok(_lock) = ctx.backups.running.try_lock() else {
        return Err(bad(BUSY));
    };
    restore_from(ctx, &st, key).await?;
    Ok(())
}

async fn restore_from(ctx: &AppCtx, st: &Storage, key: &str) -> ServiceResult<()> {
    let tmp = ctx.files.tmp_dir();
    let id = basalt_core::id::random_id(12);
    let zip = tmp.join(format!("restore-{id}.zip"));
    let db = tmp.join(format!("restore-{id}.db"));
    let files_dir = tmp.join(format!("restore-{id}-storage"));
    let r = async {
        // Fetch the archive to a local file, streaming.
        let got = st
            .get(key, Default::default())
            .await
            .map_err(|e| ServiceError(Error::internal(e.to_string())))?;
        let mut f = tokio::fs::File::create(&zip)
            .await
            .map_err(|e| ServiceError(Error::internal(e.to_string())))?;
        let mut s = got.into_stream();
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(|e| ServiceError(Error::internal(e.to_string())))?;
            f.write_all(&chunk)
                .await
                .map_err(|e| ServiceError(Error::internal(e.to_string())))?;
        }
        f.flush()
            .await
            .map_err(|e| ServiceError(Error::internal(e.to_string())))?;
        drop(f);
        let local = ctx.files.storage().local_root().map(Path::to_path_buf);
        let (z, d, fd) = (zip.clone(), db.clone(), files_dir.clone());
        let has_files = tokio::task::spawn_blocking(move || extract(&z, &d, &fd))
            .await
            .map_err(|e| ServiceError(Error::internal(e.to_string())))?
            .map_err(|e| bad(&format!("The backup cannot be restored: {e}.")))?;
        ctx.store
            .restore(&db, &KEEP_ON_RESTORE)
            .await
            .map_err(|e| bad(&format!("The backup cannot be restored: {e}.")))?;
        if let (Some(root), true) = (local, has_files) {
            swap_dir(&root, &files_dir)
                .map_err(|e| ServiceError(Error::internal(format!("restoring files: {e}"))))?;
        }
        ctx.reload_collections().await?;
        crate::settings::load(ctx).await?;
        let erased = crate::privacy::apply_erasures(ctx).await?;
        tracing::info!(backup = key, erased, "restored");
        Ok::<_, ServiceError>(())
    }
    .await;
    let _ = std::fs::remove_file(&zip);
    let _ = std::fs::remove_file(&db);
    let _ = std::fs::remove_dir_all(&files_dir);
    r
}

/// An I/O failure while extracting: logged in full; the client gets a fixed message (an OS error
/// text tells an attacker about the server and nothing useful to the operator's client).
fn unwritable(e: impl std::fmt::Display) -> String {
    tracing::warn!(error = %e, "backup restore: extracting the archive failed");
    "an entry cannot be extracted (conflicting paths in the archive, or no space left)".into()
}

/// The archive reader of a restore (public for the fuzz target `backup_archive`): unpacks `data.db`
/// to `db` and `storage/…` under `files`, skipping other entries and any whose name would leave
/// those places; whether the archive held a storage folder. The error is the client's message.
pub fn extract(zip: &Path, db: &Path, files: &Path) -> Result<bool, String> {
    let f = std::fs::File::open(zip).map_err(unwritable)?;
    let mut a = zip::ZipArchive::new(std::io::BufReader::new(f))
        .map_err(|_| "it is not a zip archive".to_string())?;
    let mut found_db = false;
    let mut has_files = false;
    std::fs::create_dir_all(files).map_err(unwritable)?;
    for i in 0..a.len() {
        let mut e = a.by_index(i).map_err(unwritable)?;
        if e.is_dir() {
            continue;
        }
        let Some(name) = e.enclosed_name() else {
            continue;
        };
        let name = name.to_string_lossy().replace('\\', "/");
        let dest: PathBuf = if name == "data.db" {
            found_db = true;
            db.to_path_buf()
        } else if let Some(rel) = name.strip_prefix("storage/") {
            has_files = true;
            files.join(rel)
        } else {
            continue;
        };
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p).map_err(unwritable)?;
        }
        let mut out = std::fs::File::create(&dest).map_err(unwritable)?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = e.read(&mut buf).map_err(unwritable)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(unwritable)?;
        }
    }
    if !found_db {
        return Err("it holds no data.db".into());
    }
    Ok(has_files)
}

/// Puts the restored files folder in place of the live one (two renames), then drops the old one.
fn swap_dir(root: &Path, restored: &Path) -> std::io::Result<()> {
    let old = root.with_file_name(format!("storage.old-{}", basalt_core::id::random_id(8)));
    if root.exists() {
        std::fs::rename(root, &old)?;
    }
    if let Err(e) = std::fs::rename(restored, root) {
        let _ = std::fs::rename(&old, root);
        return Err(e);
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// A scheduled backup (`__pbAutoBackup__`): `@auto_pb_backup_*`, keeping the newest `keep`.
pub(crate) async fn scheduled(ctx: &AppCtx, keep: usize) -> ServiceResult<()> {
    let Ok(_lock) = ctx.backups.running.try_lock() else {
        return Ok(());
    };
    let st = storage(ctx)?;
    let name = auto_name(ctx, AUTO_PREFIX);
    make(ctx, &st, &name).await?;
    let mut autos: Vec<_> = st
        .list("")
        .await
        .map_err(|e| ServiceError(Error::internal(e.to_string())))?
        .into_iter()
        .filter(|m| m.location.as_ref().starts_with(AUTO_PREFIX))
        .collect();
    autos.sort_by(|a, b| b.location.as_ref().cmp(a.location.as_ref()));
    for old in autos.into_iter().skip(keep) {
        let _ = st.delete(old.location.as_ref()).await;
    }
    tracing::info!(backup = %name, "scheduled backup");
    Ok(())
}

pub use crate::cron::Cron;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn cron_expressions() {
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 11, 21, 3, 30, 0)
            .unwrap(); // a Saturday
        assert!(Cron::parse("30 3 * * *").unwrap().matches(&t));
        assert!(Cron::parse("*/15 * * * *").unwrap().matches(&t));
        assert!(!Cron::parse("*/7 * * * *").unwrap().matches(&t));
        assert!(Cron::parse("0-59/30 1-5 * * 6").unwrap().matches(&t));
        assert!(!Cron::parse("@daily").unwrap().matches(&t));
        assert!(Cron::parse("30 3 21 11 *").unwrap().matches(&t));
        assert_eq!(Cron::parse("60 * * * *"), None);
        assert_eq!(Cron::parse("* * *"), None);
        assert_eq!(Cron::parse("*/0 * * * *"), None);
    }

    #[test]
    fn backup_keys() {
        assert!(valid_name("pb_backup_20260101000000.zip"));
        assert!(!valid_name("../x.zip"));
        assert!(!valid_name("Upper.zip"));
        assert!(!valid_name("a.b.zip"));
        assert!(!valid_name(".zip"));
        assert!(!valid_name("x.tar"));
        assert!(safe_key("Weird Name!.zip"));
        assert!(safe_key("@auto_pb_backup_1.zip"));
        assert!(!safe_key("../x.zip"));
        assert!(!safe_key(".hidden"));
    }
}
