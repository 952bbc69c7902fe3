//! Files, batch and backups through the real server: uploads on local storage and on a real
//! S3-compatible server (s3s-fs, built by `scripts/s3s.sh`), files replaced or deleted only after the
//! commit, a failed write leaving no upload behind, a batch with files rolled back as a whole, an S3
//! outage refusing writes without losing any, and a backup taken during a stream of writes restoring
//! every write acknowledged before it started.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{assert_error, Backend, Resp, TestApp};

/// A multipart body: `(name, file name, bytes)` parts (no file name: a plain field).
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "basaltTestBoundary7MA4YWxkTrZu0gW";
    let mut b = Vec::new();
    for (name, file, bytes) in parts {
        b.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => b.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => b.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        b.extend_from_slice(bytes);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), b)
}

async fn send_parts(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    parts: &[(&str, Option<&str>, &[u8])],
) -> Resp {
    let (ct, body) = multipart(parts);
    app.raw(method, path, app.su(), &ct, body).await
}

async fn fetch(app: &TestApp, path: &str) -> (u16, Vec<u8>) {
    let r = app
        .client
        .get(format!("{}{path}", app.url))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.bytes().await.unwrap().to_vec())
}

/// Every file under a folder (relative paths), sorted.
fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().to_string());
            }
        }
    }
    out.sort();
    out
}

async fn docs_collection(app: &TestApp, name: &str, create_rule: Value) -> Value {
    app.collection(json!({
        "name": name,
        "type": "base",
        "createRule": create_rule,
        "updateRule": "",
        "deleteRule": "",
        "listRule": "",
        "viewRule": "",
        "fields": [
            {"name": "title", "type": "text", "required": true},
            {"name": "doc", "type": "file", "maxSelect": 1, "maxSize": 1000},
            {"name": "docs", "type": "file", "maxSelect": 3, "maxSize": 67108864, "thumbs": ["8x8"]},
        ],
    }))
    .await
}

/// A PNG of `w`×`h` (gray), made with the image crate's own encoder.
fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::DynamicImage::new_luma8(w, h);
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Creates, replaces and deletes files: the storage holds exactly the files records name, and a
/// failed write leaves no upload behind and no old file deleted.
async fn files_follow_their_records(app: TestApp) {
    let c = docs_collection(&app, "fdocs", json!("title != 'refused'")).await;
    let cid = c["id"].as_str().unwrap().to_string();
    let root = app.ctx.files.data_dir.join("storage").join(&cid);
    let path = "/api/collections/fdocs/records";

    let r = send_parts(
        &app,
        reqwest::Method::POST,
        path,
        &[
            ("title", None, b"first"),
            ("doc", Some("Report Q1.txt"), b"quarter one"),
            ("docs", Some("a.png"), &png(16, 12)),
            ("docs", Some("b.txt"), b"bee"),
        ],
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let id = r.1["id"].as_str().unwrap().to_string();
    let doc = r.1["doc"].as_str().unwrap().to_string();
    assert!(
        doc.starts_with("report_q1_") && doc.ends_with(".txt"),
        "{doc}"
    );
    let docs: Vec<String> = serde_json::from_value(r.1["docs"].clone()).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(
        fetch(&app, &format!("/api/files/fdocs/{id}/{doc}")).await,
        (200, b"quarter one".to_vec())
    );
    let mut want = vec![
        format!("{id}/{doc}"),
        format!("{id}/{}", docs[0]),
        format!("{id}/{}", docs[1]),
    ];
    want.sort();
    assert_eq!(files_under(&root), want);

    // A thumbnail is made once, stored beside the file, and is a real 8x8 PNG.
    let (s, thumb) = fetch(
        &app,
        &format!("/api/files/fdocs/{id}/{}?thumb=8x8", docs[0]),
    )
    .await;
    assert_eq!(s, 200);
    let t = image::load_from_memory(&thumb).unwrap();
    assert_eq!((t.width(), t.height()), (8, 8));
    assert!(files_under(&root).contains(&format!("{id}/thumbs_{0}/8x8_{0}", docs[0])));

    // A failed update (title blank) stores nothing and keeps the old file.
    let before = files_under(&root);
    let r = send_parts(
        &app,
        reqwest::Method::PATCH,
        &format!("{path}/{id}"),
        &[("title", None, b""), ("doc", Some("new.txt"), b"new")],
    )
    .await;
    assert_error(&r, 400);
    assert_eq!(
        files_under(&root),
        before,
        "a failed update leaves storage as it was"
    );
    assert_eq!(
        fetch(&app, &format!("/api/files/fdocs/{id}/{doc}")).await.0,
        200
    );

    // A file over maxSize: the field error names it, nothing is stored.
    let big = vec![b'x'; 1001];
    let r = send_parts(
        &app,
        reqwest::Method::PATCH,
        &format!("{path}/{id}"),
        &[("doc", Some("big.txt"), &big)],
    )
    .await;
    let data = assert_error(&r, 400);
    assert_eq!(data["doc"]["code"], "validation_file_size_limit");
    assert_eq!(files_under(&root), before);

    // Replacing the single file and removing one of the multiple: the old ones (and the thumbnail
    // folder) are gone once the update answered.
    let r = send_parts(
        &app,
        reqwest::Method::PATCH,
        &format!("{path}/{id}"),
        &[
            ("doc", Some("second.txt"), b"two"),
            ("docs-", None, docs[0].as_bytes()),
        ],
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let doc2 = r.1["doc"].as_str().unwrap().to_string();
    assert_eq!(r.1["docs"], json!([docs[1]]));
    assert_eq!(
        fetch(&app, &format!("/api/files/fdocs/{id}/{doc}")).await.0,
        404
    );
    let mut want = vec![format!("{id}/{doc2}"), format!("{id}/{}", docs[1])];
    want.sort();
    assert_eq!(files_under(&root), want);

    // A create the createRule refuses (checked after the insert) leaves no upload behind.
    let before = files_under(&root);
    let (ct, body) = multipart(&[("title", None, b"refused"), ("doc", Some("x.txt"), b"x")]);
    let guest = app
        .client
        .post(format!("{}{path}", app.url))
        .header("content-type", ct)
        .body(body);
    let r = app.send_with(guest).await;
    assert_error(&r, 400);
    assert_eq!(files_under(&root), before);

    // Deleting the record deletes its folder.
    let r = app.delete(&format!("{path}/{id}"), app.su()).await;
    assert_eq!(r.0, 204, "{}", r.1);
    assert!(files_under(&root).is_empty(), "{:?}", files_under(&root));
}

/// A batch with files is one transaction: when a later request fails, the earlier requests' records
/// and files are gone too.
async fn batch_with_files_is_atomic(app: TestApp) {
    let c = docs_collection(&app, "bdocs", json!("")).await;
    let root = app
        .ctx
        .files
        .data_dir
        .join("storage")
        .join(c["id"].as_str().unwrap());
    let r = app
        .patch(
            "/api/settings",
            app.su(),
            json!({"batch": {"enabled": true, "maxRequests": 10, "timeout": 10}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let payload = json!({"requests": [
        {"method": "POST", "url": "/api/collections/bdocs/records", "body": {"title": "one"}},
        {"method": "POST", "url": "/api/collections/bdocs/records", "body": {"title": ""}},
    ]})
    .to_string();
    let r = send_parts(
        &app,
        reqwest::Method::POST,
        "/api/batch",
        &[
            ("@jsonPayload", None, payload.as_bytes()),
            ("requests.0.doc", Some("one.txt"), b"one"),
        ],
    )
    .await;
    let data = assert_error(&r, 400);
    assert_eq!(data["requests"]["1"]["code"], "batch_request_failed");
    assert_eq!(data["requests"]["1"]["response"]["status"], 400);
    assert!(app.ids("bdocs", app.su(), &[]).await.is_empty());
    assert!(files_under(&root).is_empty(), "{:?}", files_under(&root));

    // The same batch without the failing request commits both the record and its file; a later
    // request sees the earlier one's record (a relation-free update by id).
    let payload = json!({"requests": [
        {"method": "POST", "url": "/api/collections/bdocs/records", "body": {"id": "batchrecord0001", "title": "one"}},
        {"method": "PATCH", "url": "/api/collections/bdocs/records/batchrecord0001?fields=title", "body": {"title": "uno"}},
    ]})
    .to_string();
    let r = send_parts(
        &app,
        reqwest::Method::POST,
        "/api/batch",
        &[
            ("@jsonPayload", None, payload.as_bytes()),
            ("requests[0].doc", Some("one.txt"), b"one"),
        ],
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1[1], json!({"status": 200, "body": {"title": "uno"}}));
    let doc = r.1[0]["body"]["doc"].as_str().unwrap().to_string();
    assert_eq!(
        fetch(&app, &format!("/api/files/bdocs/batchrecord0001/{doc}")).await,
        (200, b"one".to_vec())
    );
}

/// The s3s-fs binary (`scripts/s3s.sh install` builds it once).
fn s3s_bin() -> PathBuf {
    if let Ok(p) = std::env::var("BASALT_S3S_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/basalt/tools/bin/s3s-fs");
    assert!(
        p.exists(),
        "s3s-fs is missing: run scripts/s3s.sh install (scripts/test.sh does)"
    );
    p
}

/// A private s3s-fs server over a temporary folder; killed on drop.
pub struct S3 {
    child: std::process::Child,
    root: PathBuf,
    port: u16,
}

impl S3 {
    pub fn start(root: PathBuf, port: u16) -> S3 {
        std::fs::create_dir_all(root.join("basalt")).unwrap();
        let child = std::process::Command::new(s3s_bin())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                "AKTEST",
                "--secret-key",
                "SKTEST",
            ])
            .arg(&root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        S3 { child, root, port }
    }
    pub async fn ready(&self) {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("s3s-fs did not start");
    }
    pub fn settings(&self) -> Value {
        json!({"s3": {"enabled": true, "bucket": "basalt", "region": "us-east-1",
            "endpoint": format!("http://127.0.0.1:{}", self.port), "accessKey": "AKTEST",
            "secret": "SKTEST", "forcePathStyle": true}})
    }
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Files on a real S3-compatible server: objects land in the bucket under the protocol's keys,
/// replaced ones leave it, thumbnails are stored there, and while the server is down a write with a
/// file fails cleanly (no record without its file) and the next one after it is back succeeds.
async fn files_on_s3(app: TestApp) {
    let root = std::env::temp_dir().join(format!("basalt-s3-{}", basalt_core::id::random_id(8)));
    let port = free_port();
    let mut s3 = S3::start(root.clone(), port);
    s3.ready().await;
    let r = app.patch("/api/settings", app.su(), s3.settings()).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert!(
        r.1["s3"].get("secret").is_none(),
        "secrets are never output"
    );
    let c = docs_collection(&app, "sdocs", json!("")).await;
    let cid = c["id"].as_str().unwrap().to_string();
    let bucket = root.join("basalt").join(&cid);
    let path = "/api/collections/sdocs/records";

    let r = send_parts(
        &app,
        reqwest::Method::POST,
        path,
        &[
            ("title", None, b"s3"),
            ("doc", Some("hello.txt"), b"hello s3"),
            ("docs", Some("p.png"), &png(20, 10)),
        ],
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let id = r.1["id"].as_str().unwrap().to_string();
    let doc = r.1["doc"].as_str().unwrap().to_string();
    let pic = r.1["docs"][0].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read(bucket.join(&id).join(&doc)).unwrap(),
        b"hello s3",
        "the object is in the bucket"
    );
    assert!(
        !app.ctx.files.data_dir.join("storage").join(&cid).exists(),
        "nothing went to local storage"
    );
    assert_eq!(
        fetch(&app, &format!("/api/files/sdocs/{id}/{doc}")).await,
        (200, b"hello s3".to_vec())
    );
    let ranged = app
        .client
        .get(format!("{}/api/files/sdocs/{id}/{doc}", app.url))
        .header("range", "bytes=6-7")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status().as_u16(), 206);
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), b"s3");
    let (s, thumb) = fetch(&app, &format!("/api/files/sdocs/{id}/{pic}?thumb=100x100")).await;
    assert_eq!(s, 200);
    assert_eq!(image::load_from_memory(&thumb).unwrap().width(), 100);
    assert!(bucket
        .join(&id)
        .join(format!("thumbs_{pic}"))
        .join(format!("100x100_{pic}"))
        .exists());

    // A file of several parts goes up as an S3 multipart upload and comes back whole.
    let big: Vec<u8> = (0..20usize << 20).map(|i| (i % 253) as u8).collect();
    let r = send_parts(
        &app,
        reqwest::Method::POST,
        path,
        &[("title", None, b"big"), ("docs", Some("big.bin"), &big)],
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let (bid, bname) = (
        r.1["id"].as_str().unwrap().to_string(),
        r.1["docs"][0].as_str().unwrap().to_string(),
    );
    let got = fetch(&app, &format!("/api/files/sdocs/{bid}/{bname}")).await;
    assert_eq!(got.0, 200);
    assert!(got.1 == big, "multipart object differs");

    // Replace: the old object is deleted from the bucket.
    let r = send_parts(
        &app,
        reqwest::Method::PATCH,
        &format!("{path}/{id}"),
        &[("doc", Some("again.txt"), b"again")],
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert!(!bucket.join(&id).join(&doc).exists());

    // S3 down: the write fails with the protocol's 500 and no record is created.
    s3.stop();
    let before = app.ids("sdocs", app.su(), &[]).await;
    let r = send_parts(
        &app,
        reqwest::Method::POST,
        path,
        &[("title", None, b"down"), ("doc", Some("d.txt"), b"d")],
    )
    .await;
    assert_error(&r, 500);
    assert_eq!(app.ids("sdocs", app.su(), &[]).await, before);
    // Records without files are still written meanwhile.
    let r = app.post(path, app.su(), json!({"title": "no file"})).await;
    assert_eq!(r.0, 200, "{}", r.1);

    // Back up: writes with files succeed again.
    let mut s3b = S3::start(root.clone(), port);
    s3b.ready().await;
    let r = send_parts(
        &app,
        reqwest::Method::POST,
        path,
        &[("title", None, b"up"), ("doc", Some("u.txt"), b"u")],
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);

    // Deleting the record removes its objects.
    let r = app.delete(&format!("{path}/{id}"), app.su()).await;
    assert_eq!(r.0, 204);
    assert!(files_under(&bucket.join(&id)).is_empty());
    s3b.stop();
    std::mem::forget(s3b); // the folder is removed by `s3`'s drop
}

/// A backup taken while four writers create records (with files) contains every record whose create
/// was answered before the backup started, and restoring it brings back exactly a consistent state:
/// every restored record is one that was written, and every restored file is served.
async fn backup_during_writes_restores_consistently(app: TestApp) {
    docs_collection(&app, "bk", json!("")).await;
    let app = std::sync::Arc::new(app);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (app, stop, acked) = (app.clone(), stop.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let title = format!("w{w}-{n}");
                let r = send_parts(
                    &app,
                    reqwest::Method::POST,
                    "/api/collections/bk/records",
                    &[
                        ("title", None, title.as_bytes()),
                        ("doc", Some("f.txt"), title.as_bytes()),
                    ],
                )
                .await;
                assert_eq!(r.0, 200, "{}", r.1);
                acked
                    .lock()
                    .unwrap()
                    .push(r.1["id"].as_str().unwrap().to_string());
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before_backup: Vec<String> = acked.lock().unwrap().clone();
    let r = app
        .post(
            "/api/backups",
            app.su(),
            json!({"name": "during_writes.zip"}),
        )
        .await;
    assert_eq!(r.0, 204, "{}", r.1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let all: std::collections::HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(
        all.len() > before_backup.len(),
        "writes went on during the backup"
    );

    let r = app
        .post(
            "/api/backups/during_writes.zip/restore",
            app.su(),
            json!({}),
        )
        .await;
    assert_eq!(r.0, 204, "{}", r.1);
    let list = app
        .get_q(
            "/api/collections/bk/records",
            app.su(),
            &[("perPage", "1000"), ("skipTotal", "1")],
        )
        .await;
    assert_eq!(list.0, 200, "{}", list.1);
    let items = list.1["items"].as_array().unwrap().clone();
    let restored: std::collections::HashSet<String> = items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    for id in &before_backup {
        assert!(
            restored.contains(id),
            "acknowledged before the backup: {id}"
        );
    }
    assert!(restored.is_subset(&all), "only records that were written");
    assert!(
        restored.len() < all.len(),
        "records created after the backup are not restored"
    );
    for i in &items {
        let (id, doc, title) = (
            i["id"].as_str().unwrap(),
            i["doc"].as_str().unwrap(),
            i["title"].as_str().unwrap(),
        );
        assert_eq!(
            fetch(&app, &format!("/api/files/bk/{id}/{doc}")).await,
            (200, title.as_bytes().to_vec()),
            "the file of a restored record is restored with it"
        );
    }
    // The server keeps working after the restore: writes and events go on.
    let r = app
        .post(
            "/api/collections/bk/records",
            app.su(),
            json!({"title": "after"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let listed = app.get("/api/backups", app.su()).await;
    assert_eq!(listed.1[0]["key"], "during_writes.zip");
}

/// With `backups.s3` enabled, backups are written to, listed from, downloaded from and restored from
/// the bucket.
async fn backups_in_s3(app: TestApp) {
    let root = std::env::temp_dir().join(format!("basalt-s3b-{}", basalt_core::id::random_id(8)));
    let s3 = S3::start(root.clone(), free_port());
    s3.ready().await;
    let r = app
        .patch(
            "/api/settings",
            app.su(),
            json!({"backups": {"s3": s3.settings()["s3"].clone()}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    docs_collection(&app, "bs3", json!("")).await;
    let kept = app.record("bs3", json!({"title": "kept"})).await;
    let r = app
        .post("/api/backups", app.su(), json!({"name": "in_bucket.zip"}))
        .await;
    assert_eq!(r.0, 204, "{}", r.1);
    assert!(
        root.join("basalt").join("in_bucket.zip").exists(),
        "the backup is in the bucket"
    );
    assert!(!app
        .ctx
        .files
        .data_dir
        .join("backups")
        .join("in_bucket.zip")
        .exists());
    let list = app.get("/api/backups", app.su()).await;
    assert_eq!(list.1[0]["key"], "in_bucket.zip");
    let token = app.post("/api/files/token", app.su(), json!({})).await.1["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, zip) = fetch(&app, &format!("/api/backups/in_bucket.zip?token={token}")).await;
    assert_eq!(s, 200);
    assert_eq!(&zip[..2], b"PK");
    app.record("bs3", json!({"title": "after"})).await;
    let r = app
        .post("/api/backups/in_bucket.zip/restore", app.su(), json!({}))
        .await;
    assert_eq!(r.0, 204, "{}", r.1);
    assert_eq!(
        app.ids("bs3", app.su(), &[]).await,
        vec![kept["id"].as_str().unwrap().to_string()]
    );
}

/// PostgreSQL: the backups API says where backups come from instead.
async fn postgres_backups_point_to_db_tooling(app: TestApp) {
    for r in [
        app.get("/api/backups", app.su()).await,
        app.post("/api/backups", app.su(), json!({})).await,
        app.post("/api/backups/x.zip/restore", app.su(), json!({}))
            .await,
    ] {
        assert_error(&r, 400);
        let m = r.1["message"].as_str().unwrap();
        assert!(m.contains("PostgreSQL") && m.contains("pg_dump"), "{m}");
    }
    let h = app.get("/api/health", app.su()).await;
    assert_eq!(h.1["data"]["canBackup"], false);
}

crate::both!(
    files_follow_their_records,
    batch_with_files_is_atomic,
    files_on_s3
);

mod one_backend {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn backup_during_writes() {
        backup_during_writes_restores_consistently(
            crate::helpers::spawn_app(Backend::Sqlite).await,
        )
        .await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn backups_s3() {
        backups_in_s3(crate::helpers::spawn_app(Backend::Sqlite).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_backups() {
        postgres_backups_point_to_db_tooling(crate::helpers::spawn_app(Backend::Postgres).await)
            .await;
    }
}
