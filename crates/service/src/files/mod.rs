//! Files: where uploads live ([`Storage`] over `object_store`: a local folder or any S3-compatible
//! bucket), how record writes store and drop them ([`FileOps`]), and the names they get.
//!
//! Layout of keys (as PocketBase): `<collectionId>/<recordId>/<storedName>`, thumbnails under
//! `<collectionId>/<recordId>/thumbs_<storedName>/<size>_<storedName>`.
//!
//! **Invariants:**
//! - A record never names a file that is not stored: new files are stored before the transaction
//!   that references them commits; if it does not commit they are deleted again.
//! - A stored file is deleted only after the transaction that stopped referencing it committed (a
//!   crash in between leaves an orphan file, never a dangling name).
//! - Uploads are streamed: a multipart file part goes to a temporary file as it arrives, and from
//!   there to the storage in chunks (local storage: a rename), so memory does not grow with file size.

pub mod thumbs;
pub mod upload;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use basalt_core::record::Data;
use basalt_core::schema::{Collection, FieldType};
use futures_util::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use serde_json::Value as Json;

/// The part size of multipart uploads to S3; smaller files go in one PUT.
const PART_SIZE: usize = 8 << 20;

/// Default `maxSize` of a file field that sets none (the protocol's 5 MiB).
pub const DEFAULT_MAX_SIZE: u64 = 5 << 20;

/// Where files are kept. Cheap to clone; replaced as a whole when the `s3` settings change.
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// The folder of local storage: uploads are renamed into it instead of copied.
    local_root: Option<PathBuf>,
    describe: String,
}

/// S3-compatible storage settings (the protocol's `s3` settings object).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct S3Config {
    pub bucket: String,
    pub region: String,
    pub endpoint: String,
    pub access_key: String,
    pub secret: String,
    pub force_path_style: bool,
}

impl S3Config {
    /// The enabled S3 settings in a settings object (`s3` or `backups.s3`), if any.
    pub fn from_settings(v: &Json) -> Option<S3Config> {
        if !v.get("enabled").and_then(Json::as_bool).unwrap_or(false) {
            return None;
        }
        let s = |k: &str| v.get(k).and_then(Json::as_str).unwrap_or("").to_string();
        Some(S3Config {
            bucket: s("bucket"),
            region: s("region"),
            endpoint: s("endpoint"),
            access_key: s("accessKey"),
            secret: s("secret"),
            force_path_style: v
                .get("forcePathStyle")
                .and_then(Json::as_bool)
                .unwrap_or(false),
        })
    }
}

pub type StorageResult<T> = Result<T, object_store::Error>;

impl Storage {
    /// A local folder (created when missing).
    pub fn local(root: &Path) -> std::io::Result<Storage> {
        std::fs::create_dir_all(root)?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(root)
            .map_err(std::io::Error::other)?
            .with_automatic_cleanup(true);
        Ok(Storage {
            store: Arc::new(store),
            local_root: Some(root.to_path_buf()),
            describe: format!("local {}", root.display()),
        })
    }

    /// An S3-compatible bucket.
    pub fn s3(c: &S3Config) -> Result<Storage, String> {
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&c.bucket)
            .with_region(if c.region.is_empty() {
                "us-east-1"
            } else {
                &c.region
            })
            .with_access_key_id(&c.access_key)
            .with_secret_access_key(&c.secret)
            .with_virtual_hosted_style_request(!c.force_path_style);
        if !c.endpoint.is_empty() {
            b = b
                .with_endpoint(c.endpoint.trim_end_matches('/'))
                .with_allow_http(c.endpoint.starts_with("http://"));
        }
        let store = b.build().map_err(|e| e.to_string())?;
        Ok(Storage {
            store: Arc::new(store),
            local_root: None,
            describe: format!("s3 {} at {}", c.bucket, c.endpoint),
        })
    }

    pub fn describe(&self) -> &str {
        &self.describe
    }

    pub fn local_root(&self) -> Option<&Path> {
        self.local_root.as_deref()
    }

    /// Stores the file at `path` under `key`, streaming it. The file is consumed (moved or copied).
    pub async fn put_file(&self, key: &str, path: &Path) -> StorageResult<()> {
        use tracing::Instrument;
        self.put_file_inner(key, path)
            .instrument(tracing::debug_span!("storage.put", key))
            .await
    }

    async fn put_file_inner(&self, key: &str, path: &Path) -> StorageResult<()> {
        if let Some(root) = &self.local_root {
            let dest = root.join(key);
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| io_err(key, e))?;
            }
            if tokio::fs::rename(path, &dest).await.is_ok() {
                return Ok(());
            }
            // Another filesystem: copy, then let the caller's temporary file go.
            tokio::fs::copy(path, &dest)
                .await
                .map_err(|e| io_err(key, e))?;
            return Ok(());
        }
        use tokio::io::AsyncReadExt;
        let mut f = tokio::fs::File::open(path)
            .await
            .map_err(|e| io_err(key, e))?;
        let size = f.metadata().await.map_err(|e| io_err(key, e))?.len();
        if size <= PART_SIZE as u64 {
            // One PUT for a file of one part (one request instead of three).
            let mut buf = Vec::with_capacity(size as usize);
            f.read_to_end(&mut buf).await.map_err(|e| io_err(key, e))?;
            self.store
                .put(&Key::from(key), bytes::Bytes::from(buf).into())
                .await?;
            return Ok(());
        }
        let upload = self.store.put_multipart(&Key::from(key)).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match f.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(io_err(key, e));
                }
            };
            if n == 0 {
                break;
            }
            // At most two parts in flight: memory stays at a few chunks whatever the file size.
            w.wait_for_capacity(2).await?;
            w.write(&buf[..n]);
        }
        w.finish().await?;
        Ok(())
    }

    pub async fn put_bytes(&self, key: &str, bytes: bytes::Bytes) -> StorageResult<()> {
        use tracing::Instrument;
        self.store
            .put(&Key::from(key), bytes.into())
            .instrument(tracing::debug_span!("storage.put", key))
            .await?;
        Ok(())
    }

    pub async fn get(
        &self,
        key: &str,
        opts: object_store::GetOptions,
    ) -> StorageResult<object_store::GetResult> {
        use tracing::Instrument;
        self.store
            .get_opts(&Key::from(key), opts)
            .instrument(tracing::debug_span!("storage.get", key))
            .await
    }

    pub async fn head(&self, key: &str) -> StorageResult<Option<object_store::ObjectMeta>> {
        match self.store.head(&Key::from(key)).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes one object; a missing one is not an error.
    pub async fn delete(&self, key: &str) -> StorageResult<()> {
        use tracing::Instrument;
        let span = tracing::debug_span!("storage.delete", key);
        match self.store.delete(&Key::from(key)).instrument(span).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every object under `prefix` (a folder: `a/b` lists `a/b/...`).
    pub async fn list(&self, prefix: &str) -> StorageResult<Vec<object_store::ObjectMeta>> {
        let p = Key::from(prefix);
        let mut s = self.store.list(Some(&p));
        let mut out = Vec::new();
        while let Some(m) = s.next().await {
            match m {
                Ok(m) => out.push(m),
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Deletes every object under `prefix`.
    pub async fn delete_prefix(&self, prefix: &str) -> StorageResult<()> {
        for m in self.list(prefix).await? {
            self.delete(m.location.as_ref()).await?;
        }
        Ok(())
    }
}

fn io_err(key: &str, e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "basalt",
        source: format!("{key}: {e}").into(),
    }
}

/// The files part of the application state.
pub struct Files {
    /// `<data dir>/storage` (local storage), `<data dir>/.tmp` (uploads being received),
    /// `<data dir>/backups` (local backups).
    pub data_dir: PathBuf,
    storage: RwLock<Arc<Storage>>,
    /// The `s3` settings the current storage was built from (`None`: local).
    s3: RwLock<Option<S3Config>>,
    /// Thumbnails are generated at most this many at a time (CPU and memory bound).
    pub thumbs: tokio::sync::Semaphore,
    /// While a backup copies files, deletions wait here (`Some`), so the backup holds every file its
    /// database snapshot names.
    held: std::sync::Mutex<Option<Vec<FileOps>>>,
}

impl Files {
    pub fn new(data_dir: PathBuf) -> std::io::Result<Files> {
        let local = Storage::local(&data_dir.join("storage"))?;
        std::fs::create_dir_all(data_dir.join(".tmp"))?;
        Ok(Files {
            data_dir,
            storage: RwLock::new(Arc::new(local)),
            s3: RwLock::new(None),
            thumbs: tokio::sync::Semaphore::new(2),
            held: std::sync::Mutex::new(None),
        })
    }

    pub fn storage(&self) -> Arc<Storage> {
        match self.storage.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Holds file deletions back until [`Files::release_held`].
    pub fn hold_deletions(&self) {
        if let Ok(mut g) = self.held.lock() {
            g.get_or_insert_with(Vec::new);
        }
    }

    /// Runs the deletions held back and stops holding.
    pub async fn release_held(&self) {
        let list = self.held.lock().ok().and_then(|mut g| g.take());
        for ops in list.unwrap_or_default() {
            ops.delete_obsolete(self).await;
        }
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.data_dir.join(".tmp")
    }

    /// Switches storage when the settings' `s3` part changed (files are not migrated, as in the
    /// protocol). A configuration the S3 client refuses keeps the previous storage and is logged.
    pub fn configure(&self, settings: &Json) {
        let want = settings.get("s3").and_then(S3Config::from_settings);
        let same = match self.s3.read() {
            Ok(g) => *g == want,
            Err(p) => *p.into_inner() == want,
        };
        if same {
            return;
        }
        let next = match &want {
            None => Storage::local(&self.data_dir.join("storage")).map_err(|e| e.to_string()),
            Some(c) => Storage::s3(c),
        };
        match next {
            Ok(s) => {
                tracing::info!(storage = s.describe(), "file storage");
                if let Ok(mut g) = self.storage.write() {
                    *g = Arc::new(s);
                }
                if let Ok(mut g) = self.s3.write() {
                    *g = want;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "file storage settings refused; keeping the previous storage")
            }
        }
    }
}

/// A record's files folder.
pub fn record_prefix(coll: &Collection, record_id: &str) -> String {
    format!("{}/{}", coll.id, record_id)
}

pub fn file_key(coll: &Collection, record_id: &str, name: &str) -> String {
    format!("{}/{}/{}", coll.id, record_id, name)
}

pub fn thumbs_prefix(coll: &Collection, record_id: &str, name: &str) -> String {
    format!("{}/{}/thumbs_{}", coll.id, record_id, name)
}

/// The names a record's file field holds.
pub fn names(v: Option<&Json>) -> Vec<String> {
    match v {
        Some(Json::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(Json::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Every file name a record references, with its field.
pub fn record_files(coll: &Collection, d: &Data) -> Vec<String> {
    coll.fields
        .iter()
        .filter(|f| f.ty() == FieldType::File)
        .flat_map(|f| names(d.get(&f.name)))
        .collect()
}

/// The stored name of an upload, as the protocol makes it: `<name>_<10 random [a-z0-9]><ext>` where
/// the extension runs from the second-to-last dot (case kept, at most 20 characters; guessed from
/// the content type when missing) and the name is the rest in snake case (ASCII words, at most 100
/// characters; shorter than 3 gets 10 random characters appended).
pub fn stored_name(original: &str, mime: &str) -> String {
    let original = original.rsplit(['/', '\\']).next().unwrap_or("");
    let dots: Vec<usize> = original.match_indices('.').map(|(i, _)| i).collect();
    let cut = match dots.len() {
        0 => original.len(),
        1 => dots[0],
        n => dots[n - 2],
    };
    let (base, ext) = original.split_at(cut);
    let mut ext: String = ext
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_.*+=#-".contains(*c))
        .collect();
    if ext.len() > 20 {
        ext = format!(".{}", &ext[ext.len() - 20..].trim_start_matches('.'));
    }
    if ext.is_empty() || ext == "." {
        ext = ext_for(mime).to_string();
    }
    let mut name: String = snake_case(base).chars().take(100).collect();
    if name.len() < 3 {
        name.push_str(&basalt_core::id::random_id(10));
    }
    format!("{name}_{}{ext}", basalt_core::id::random_id(10))
}

/// The protocol's snake case: ASCII words (anything else separates), `_` before an upper-case letter
/// that follows a non-upper-case one, all lower case, joined by `_`.
pub fn snake_case(s: &str) -> String {
    let mut words = Vec::new();
    for w in s.split(|c: char| !c.is_ascii_alphanumeric()) {
        if w.is_empty() {
            continue;
        }
        let mut out = String::new();
        let mut prev_upper = true;
        for c in w.chars() {
            if c.is_ascii_uppercase() && !prev_upper {
                out.push('_');
            }
            prev_upper = c.is_ascii_uppercase();
            out.push(c.to_ascii_lowercase());
        }
        words.push(out);
    }
    words.join("_")
}

/// An extension for a content type, for uploads whose name has none.
fn ext_for(mime: &str) -> &'static str {
    match mime.split(';').next().unwrap_or("").trim() {
        "text/plain" => ".txt",
        "image/png" => ".png",
        "image/jpeg" => ".jpg",
        "image/gif" => ".gif",
        "image/webp" => ".webp",
        "application/pdf" => ".pdf",
        "application/zip" => ".zip",
        "application/json" => ".json",
        "text/csv" => ".csv",
        "text/html" => ".html",
        "image/svg+xml" => ".svg",
        _ => "",
    }
}

/// Whether browsers may show a content type inline (images, audio, video, PDF); everything else is
/// served as an attachment.
pub fn inline_type(ct: &str) -> bool {
    let t = ct.split(';').next().unwrap_or("").trim();
    matches!(
        t,
        "image/png"
            | "image/jpg"
            | "image/jpeg"
            | "image/gif"
            | "image/webp"
            | "image/x-icon"
            | "image/bmp"
            | "video/webm"
            | "video/mp4"
            | "video/3gpp"
            | "video/quicktime"
            | "video/x-ms-wmv"
            | "audio/basic"
            | "audio/aiff"
            | "audio/mpeg"
            | "audio/midi"
            | "audio/mp3"
            | "audio/wave"
            | "audio/wav"
            | "audio/x-wav"
            | "audio/x-mpeg"
            | "audio/x-m4a"
            | "audio/aac"
            | "application/pdf"
            | "application/x-pdf"
    )
}

/// The content type of a file from its first bytes (magic numbers), refined for text by the name's
/// extension.
pub fn sniff(head: &[u8], name: &str) -> String {
    if let Some(t) = infer::get(head) {
        return t.mime_type().to_string();
    }
    let utf8 = std::str::from_utf8(head).is_ok()
        || std::str::from_utf8(&head[..head.len().saturating_sub(3)]).is_ok();
    let text = utf8
        && !head
            .iter()
            .any(|b| *b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b));
    if !text || head.is_empty() && !name.contains('.') {
        return if head.is_empty() {
            "text/plain".into()
        } else {
            "application/octet-stream".into()
        };
    }
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "json" => "application/json",
        "csv" => "text/csv",
        "svg" => "image/svg+xml",
        "html" | "htm" => "text/html",
        "xml" => "text/xml",
        "js" | "mjs" => "text/javascript",
        "css" => "text/css",
        _ => "text/plain",
    }
    .into()
}

/// Whether a detected type passes a field's allow-list (`text/plain` admits every text format).
pub fn mime_allowed(detected: &str, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let d = detected.split(';').next().unwrap_or("").trim();
    let texty = d.starts_with("text/") || matches!(d, "application/json" | "image/svg+xml");
    allowed.iter().any(|a| {
        let a = a.split(';').next().unwrap_or("").trim();
        a.eq_ignore_ascii_case(d) || (a == "text/plain" && texty)
    })
}

/// The content type to serve a stored file with, from its extension.
pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "bmp" => "image/bmp",
        "avif" => "image/avif",
        "pdf" => "application/pdf",
        "json" => "application/json",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "txt" | "md" | "log" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "xml" => "text/xml; charset=utf-8",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "ogg" => "audio/ogg",
        _ => "application/octet-stream",
    }
}

/// A write's effects on storage: files stored before the commit (deleted again when the write fails)
/// and files or whole record folders to delete once it committed.
#[derive(Default)]
pub struct FileOps {
    pub stored: Vec<String>,
    pub obsolete_files: Vec<(Arc<Collection>, String, String)>,
    pub obsolete_records: Vec<(String, String)>,
}

impl FileOps {
    /// After the commit: the files no record references any more go (with their thumbnails).
    pub async fn committed(self, files: &Files) {
        if self.obsolete_files.is_empty() && self.obsolete_records.is_empty() {
            return;
        }
        let this = match files.held.lock() {
            Ok(mut g) => match g.as_mut() {
                Some(list) => {
                    list.push(self);
                    return;
                }
                None => self,
            },
            Err(_) => self,
        };
        this.delete_obsolete(files).await;
    }

    async fn delete_obsolete(self, files: &Files) {
        let st = files.storage();
        for (coll, rid, name) in &self.obsolete_files {
            let r = async {
                st.delete(&file_key(coll, rid, name)).await?;
                st.delete_prefix(&thumbs_prefix(coll, rid, name)).await
            }
            .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, file = %name, "could not delete a replaced file");
            }
        }
        for (cid, rid) in &self.obsolete_records {
            if let Err(e) = st.delete_prefix(&format!("{cid}/{rid}")).await {
                tracing::warn!(error = %e, record = %rid, "could not delete a deleted record's files");
            }
        }
    }

    /// The write did not commit: files stored for it go.
    pub async fn failed(self, files: &Files) {
        let st = files.storage();
        for k in &self.stored {
            if let Err(e) = st.delete(k).await {
                tracing::warn!(error = %e, file = %k, "could not delete an unreferenced upload");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_follow_the_protocol() {
        let r = |s: &str| {
            s.len() == 10
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        let n = stored_name("My Photo (1).PNG", "image/png");
        assert!(n.starts_with("my_photo_1_") && n.ends_with(".PNG"), "{n}");
        assert!(r(&n["my_photo_1_".len()..n.len() - 4]), "{n}");
        assert!(stored_name("fooBarBaz.txt", "").starts_with("foo_bar_baz_"));
        assert!(stored_name("UPPER.JSON", "").starts_with("upper_"));
        assert!(stored_name("archive.tar.gz", "").ends_with(".tar.gz"));
        let n = stored_name("a.txt", "text/plain");
        assert_eq!(n.len(), 1 + 10 + 1 + 10 + 4, "{n}");
        assert!(n.starts_with('a') && n.ends_with(".txt"));
        let n = stored_name("../../etc/passwd", "text/plain");
        assert!(n.starts_with("passwd_") && n.ends_with(".txt"), "{n}");
        assert!(!n.contains('/'));
        assert!(stored_name(&("x".repeat(150) + ".txt"), "").starts_with(&("x".repeat(100) + "_")));
        let n = stored_name("x.abcdefghijklmnopqrstuvwxyz0123", "");
        assert!(n.ends_with(".klmnopqrstuvwxyz0123"), "{n}");
        assert!(stored_name("ÄÖÜ.txt", "").len() == 10 + 1 + 10 + 4);
    }

    #[test]
    fn mime_lists() {
        assert!(mime_allowed("image/png", &["image/png".into()]));
        assert!(!mime_allowed("image/png", &["image/jpeg".into()]));
        assert!(mime_allowed("application/json", &["text/plain".into()]));
        assert!(mime_allowed("anything/at-all", &[]));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n0000", "x.bin"), "image/png");
        assert_eq!(sniff(b"hello", "a.txt"), "text/plain");
        assert_eq!(sniff(b"{\"a\":1}", "a.json"), "application/json");
        assert_eq!(
            sniff(&[0, 159, 146, 150, 1, 2], "a"),
            "application/octet-stream"
        );
    }
}
