//! Tests of the `basalt` binary as a user runs it: CLI words, settings errors, graceful shutdown, and
//! durability under `kill -9` on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::zombie_processes)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod chaos;
mod cluster;
mod connections;
mod import;
mod observability;
mod pii;
mod traces;

const BIN: &str = env!("CARGO_BIN_EXE_basalt");

struct Dir(std::path::PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) on drop, so a failing test leaves no server behind.
struct Proc(std::process::Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tmp() -> Dir {
    let d = std::env::temp_dir().join(format!("basalt-cli-{}", basalt_core::id::random_id(10)));
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pg_base() -> String {
    std::env::var("BASALT_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

async fn fresh_pg() -> String {
    let name = format!("basalt_cli_{}", basalt_core::id::random_id(10));
    let (c, conn) =
        tokio_postgres::connect(&format!("{}/postgres", pg_base()), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    c.batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    format!("{}/{name}", pg_base())
}

fn storage_args(dir: &Dir, db: &Option<String>) -> Vec<String> {
    let mut a = vec!["--dir".to_string(), dir.0.display().to_string()];
    if let Some(u) = db {
        a.push("--database-url".into());
        a.push(u.clone());
    }
    a
}

fn upsert(dir: &Dir, db: &Option<String>) {
    let out = Command::new(BIN)
        .args(["superuser", "upsert", "admin@example.com", "password123"])
        .args(storage_args(dir, db))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Successfully saved superuser"));
}

async fn serve(dir: &Dir, db: &Option<String>) -> (Child, String) {
    serve_with(dir, db, &[]).await
}

async fn serve_with(dir: &Dir, db: &Option<String>, extra: &[String]) -> (Child, String) {
    let port = free_port();
    let child = Command::new(BIN)
        .args(["serve", "--http", &format!("127.0.0.1:{port}")])
        .args(storage_args(dir, db))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if reqwest::get(format!("{url}/api/health"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return (child, url);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start");
}

async fn su_token(url: &str) -> String {
    let r: Value = reqwest::Client::new()
        .post(format!(
            "{url}/api/collections/_superusers/auth-with-password"
        ))
        .json(&json!({"identity": "admin@example.com", "password": "password123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["token"].as_str().unwrap().to_string()
}

/// GET with a superuser token, the answer as JSON.
/// The `/metrics` page of the server at `url` (main port, loopback: no token).
async fn metrics_text(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The sum of the samples whose line starts with `prefix` (a series name, with labels if wanted).
fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn get_json(c: &reqwest::Client, url: String, tok: &str) -> Value {
    c.get(url)
        .header("Authorization", tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every record of `coll` with `fields` (superuser listing, 1,000 a page).
async fn all_records(
    c: &reqwest::Client,
    url: &str,
    tok: &str,
    coll: &str,
    fields: &str,
) -> Vec<Value> {
    let mut out = vec![];
    for page in 1.. {
        let r = get_json(
            c,
            format!("{url}/api/collections/{coll}/records?perPage=1000&page={page}&fields={fields}&skipTotal=1"),
            tok,
        )
        .await;
        let items = r["items"].as_array().unwrap();
        out.extend(items.iter().cloned());
        if items.len() < 1000 {
            break;
        }
    }
    out
}

/// Every record id of `coll`.
async fn all_ids(c: &reqwest::Client, url: &str, tok: &str, coll: &str) -> Vec<String> {
    all_records(c, url, tok, coll, "id")
        .await
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn typegen_prints_typescript_and_openapi_from_the_data_directory() {
    let d = tmp();
    upsert(&d, &None);
    let run = |what: &str| {
        let out = Command::new(BIN)
            .args(["typegen", what])
            .args(storage_args(&d, &None))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let ts = run("ts");
    assert!(ts.contains("export interface UsersRecord {"), "{ts}");
    assert!(
        ts.contains(
            "  collection(idOrName: \"users\"): RecordService<CollectionRecords[\"users\"]>\n"
        ),
        "{ts}"
    );
    let doc: Value = serde_json::from_str(&run("openapi")).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/collections/users/auth-with-password"]["post"].is_object());
    assert!(doc["components"]["schemas"]["UsersCreate"]["required"]
        .as_array()
        .unwrap()
        .contains(&json!("email")));
}

#[test]
fn version_and_targets() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("basalt "));
    let out = Command::new(BIN)
        .args(["serve", "--list-targets"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("all") && text.contains("api") && text.contains("worker"),
        "{text}"
    );
    assert!(text.contains("webhook-worker") && text.contains("module dependencies"));
}

/// `basalt superuser create|update|upsert|delete|otp`: PocketBase's words and refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superuser_commands_follow_pocketbase() {
    let dir = tmp();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("superuser")
            .args(args)
            .args(storage_args(&dir, &None))
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = run(&["create", "a@example.com", "password123"]);
    assert!(
        ok && out.contains("Successfully created new superuser \"a@example.com\"!"),
        "{out}"
    );
    let (ok, out) = run(&["create", "a@example.com", "password123"]);
    assert!(!ok && out.contains("Value must be unique"), "{out}");
    let (ok, out) = run(&["create", "not-an-email", "password123"]);
    assert!(!ok && out.contains("Invalid email address"), "{out}");
    let (ok, out) = run(&["create", "b@example.com", "short"]);
    assert!(!ok && out.contains("at least 8 characters"), "{out}");
    let (ok, out) = run(&["update", "b@example.com", "password456"]);
    assert!(!ok && out.contains("doesn't exist"), "{out}");
    let (ok, out) = run(&["update", "a@example.com", "password456"]);
    assert!(
        ok && out.contains("Successfully changed superuser \"a@example.com\" password!"),
        "{out}"
    );
    let (ok, out) = run(&["otp", "a@example.com"]);
    assert!(
        !ok && out.contains("OTP auth is not enabled for the _superusers collection"),
        "{out}"
    );
    let (ok, out) = run(&["delete", "b@example.com"]);
    assert!(ok && out.contains("is missing or already deleted"), "{out}");
    let (ok, out) = run(&["delete", "a@example.com"]);
    assert!(
        !ok && out.contains("You can't delete the only existing superuser."),
        "{out}"
    );
    let (ok, out) = run(&["upsert", "b@example.com", "password789"]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["delete", "a@example.com"]);
    assert!(
        ok && out.contains("Successfully deleted superuser \"a@example.com\"!"),
        "{out}"
    );
    let (ok, out) = run(&["ips", "bad"]);
    assert!(!ok && out.contains("superuserIPs"), "{out}");
    let (ok, out) = run(&["ips", "10.0.0.1", "192.168.0.0/16"]);
    assert!(ok && out.contains("└─ 192.168.0.0/16"), "{out}");
    // Loopback allowed again, for the sign-ins below.
    let (ok, out) = run(&["ips", "127.0.0.1"]);
    assert!(ok, "{out}");
    // The updated password signs in; the deleted superuser does not.
    let (mut child, url) = serve(&dir, &None).await;
    let http = reqwest::Client::new();
    let login = |email: &'static str, password: &'static str| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.post(format!(
                "{url}/api/collections/_superusers/auth-with-password"
            ))
            .json(&json!({"identity": email, "password": password}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
        }
    };
    assert_eq!(login("b@example.com", "password789").await, 200);
    assert_eq!(login("a@example.com", "password456").await, 400);
    let _ = child.kill();
    let _ = child.wait();
}

/// `basalt schema export | diff | apply [--dry-run]` on SQLite and PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_as_code() {
    for db in [None, Some(fresh_pg().await)] {
        schema_as_code_on(db).await;
    }
}

fn schema_cmd(dir: &Dir, db: &Option<String>, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("schema")
        .args(args)
        .args(storage_args(dir, db))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn schema_export(dir: &Dir, db: &Option<String>) -> Vec<Value> {
    let (ok, out, err) = schema_cmd(dir, db, &["export"]);
    assert!(ok, "{err}");
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

async fn schema_as_code_on(db: Option<String>) {
    let dir = tmp();
    upsert(&dir, &db);
    let file = dir.0.join("schema.json");
    let f = file.to_str().unwrap().to_string();
    let named = |all: &[Value], n: &str| all.iter().find(|c| c["name"] == n).cloned();
    // Version 1, applied from a file: posts (title, legacy) and drafts.
    let mut v1 = schema_export(&dir, &db);
    v1.push(
        json!({"name": "posts", "type": "base", "listRule": "", "viewRule": "", "createRule": "",
        "fields": [{"name": "title", "type": "text"}, {"name": "legacy", "type": "text"}]}),
    );
    v1.push(json!({"name": "drafts", "type": "base", "createRule": "", "fields": [{"name": "body", "type": "text"}]}));
    std::fs::write(&file, serde_json::to_string(&v1).unwrap()).unwrap();
    let (ok, out, err) = schema_cmd(&dir, &db, &["apply", &f]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("+ posts: new base collection with 2 fields"),
        "{out}"
    );
    // Records, through the API.
    let (mut child, url) = serve(&dir, &db).await;
    let http = reqwest::Client::new();
    for (c, body) in [
        ("posts", json!({"title": "a", "legacy": "x"})),
        ("posts", json!({"title": "b", "legacy": "y"})),
        ("drafts", json!({"body": "d"})),
    ] {
        let r = http
            .post(format!("{url}/api/collections/{c}/records"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let _ = child.kill();
    let _ = child.wait();

    // Version 2: title renamed (same field id), legacy removed, views added, drafts gone, tags new.
    let mut v2 = schema_export(&dir, &db);
    let posts = v2.iter_mut().find(|c| c["name"] == "posts").unwrap();
    let fields = posts["fields"].as_array_mut().unwrap();
    fields.retain(|f| f["name"] != "legacy");
    for f in fields.iter_mut() {
        if f["name"] == "title" {
            f["name"] = json!("headline");
        }
    }
    fields.push(json!({"name": "views", "type": "number"}));
    posts["listRule"] = json!("headline != ''");
    v2.retain(|c| c["name"] != "drafts");
    v2.push(json!({"name": "tags", "type": "base", "fields": [{"name": "label", "type": "text"}]}));
    std::fs::write(&file, serde_json::to_string_pretty(&v2).unwrap()).unwrap();
    let (ok, out, err) = schema_cmd(&dir, &db, &["diff", &f]);
    assert!(ok, "{err}");
    for line in [
        "~ posts: rename field title to headline",
        "~ posts: add field views (number)",
        "~ posts: remove field legacy (text) and its values in 2 records  [DATA LOSS]",
        "~ posts: listRule \"\" -> \"headline != ''\"",
        "- drafts: delete the collection and its 1 records  [DATA LOSS]",
        "+ tags: new base collection with 1 fields",
        "2 change(s) drop stored values.",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // A dry run checks and changes nothing.
    let (ok, out, err) = schema_cmd(&dir, &db, &["apply", "--dry-run", &f]);
    assert!(ok && out.contains("Dry run"), "{out}{err}");
    let after = schema_export(&dir, &db);
    assert!(named(&after, "drafts").is_some() && named(&after, "tags").is_none());
    // Applied: the file's schema, the renamed field keeping its values.
    let (ok, out, err) = schema_cmd(&dir, &db, &["apply", &f]);
    assert!(ok && out.contains("Applied."), "{out}{err}");
    let after = schema_export(&dir, &db);
    assert!(named(&after, "drafts").is_none() && named(&after, "tags").is_some());
    let (mut child, url) = serve(&dir, &db).await;
    let list: Value = http
        .get(format!("{url}/api/collections/posts/records?sort=headline"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["headline"], "a", "{list}");
    assert!(list["items"][0].get("legacy").is_none());
    let _ = child.kill();
    let _ = child.wait();
    let (ok, out, _) = schema_cmd(&dir, &db, &["diff", &f]);
    assert!(ok && out.trim() == "No changes.", "{out}");
    // A file that cannot apply changes nothing.
    let mut bad = v2.clone();
    bad.push(json!({"name": "broken", "type": "base",
        "fields": [{"name": "x", "type": "relation", "collectionId": "missing"}]}));
    bad.retain(|c| c["name"] != "tags");
    std::fs::write(&file, serde_json::to_string(&bad).unwrap()).unwrap();
    let (ok, out, err) = schema_cmd(&dir, &db, &["apply", &f]);
    assert!(!ok, "{out}");
    assert!(err.contains("Failed to import collections"), "{err}");
    let now = schema_export(&dir, &db);
    assert_eq!(now.len(), after.len(), "nothing changed");
    assert!(named(&now, "tags").is_some());
}

#[test]
fn bad_settings_fail_with_a_clear_message() {
    let d = tmp();
    let cfg = d.0.join("basalt.toml");
    std::fs::write(&cfg, "htp = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown field") && err.contains("htp"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args([
            "serve",
            "--dir",
            d.0.to_str().unwrap(),
            "--database-url",
            "postgres://nobody:secretpw@127.0.0.1:1/x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("postgres") && err.contains("127.0.0.1:1"),
        "names the database: {err}"
    );
    assert!(
        !err.contains("secretpw"),
        "never prints the password: {err}"
    );
    let out = Command::new(BIN)
        .args(["serve", "--target", "warp"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    std::fs::write(&cfg, "[storage]\nsynchronous = \"sometimes\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("synchronous") && err.contains("normal"),
        "{err}"
    );
    // Observability settings are checked too, each error naming its key.
    for (toml, needle) in [
        ("[telemetry]\nsample_ratio = 2.0\n", "sample_ratio"),
        ("[telemetry]\nendpoint = \"collector:4318\"\n", "endpoint"),
        ("[metrics]\nallow = [\"not-a-net\"]\n", "allow"),
        ("[metrics]\ntokn = \"x\"\n", "tokn"),
    ] {
        std::fs::write(&cfg, toml).unwrap();
        let out = Command::new(BIN)
            .args(["serve", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{toml}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{toml}: {err}");
    }
    // A configured event sink that cannot be reached stops the start, naming the sink.
    std::fs::write(&cfg, "[events.nats]\nurl = \"nats://127.0.0.1:1\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--http", &format!("127.0.0.1:{}", free_port())])
        .args([
            "--dir",
            d.0.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("events sink nats is configured but unreachable"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_cleanly() {
    let d = tmp();
    upsert(&d, &None);
    let (mut child, url) = serve(&d, &None).await;
    assert!(su_token(&url).await.len() > 20);
    // An open realtime stream must not hold the shutdown: the server ends it, the SDK reconnects.
    let mut sse = reqwest::get(format!("{url}/api/realtime")).await.unwrap();
    let first = sse.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("PB_CONNECT"));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The stream ended (cleanly or by the connection closing), it did not hang.
    let rest = tokio::time::timeout(Duration::from_secs(2), sse.chunk()).await;
    assert!(
        matches!(rest, Ok(Ok(None)) | Ok(Err(_))),
        "stream still open: {rest:?}"
    );
}

/// Creates records from several concurrent writers, kills the server with SIGKILL in the middle,
/// restarts it, and checks that every create answered 200 is there, and that the NATS JetStream sink
/// (the machine's server, a stream of this test's own) ends up with the event of every stored record:
/// the outbox resumes where the killed process stopped.
async fn kill9_loses_no_acknowledged_write(db: Option<String>, extra_toml: &str) {
    let d = tmp();
    upsert(&d, &db);
    let tag = basalt_core::id::random_id(8).to_uppercase();
    let stream = format!("BASALT_KILL9_{tag}");
    let prefix = format!("kill9{}", tag.to_lowercase());
    let cfg = d.0.join("basalt.toml");
    std::fs::write(
        &cfg,
        format!(
            "{extra_toml}[events.nats]\nurl = \"{}\"\nstream = \"{stream}\"\nsubject_prefix = \"{prefix}\"\n",
            nats_url()
        ),
    )
    .unwrap();
    let extra = vec!["--config".to_string(), cfg.display().to_string()];
    let (mut child, url) = serve_with(&d, &db, &extra).await;
    let tok = su_token(&url).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{url}/api/collections"))
        .header("Authorization", &tok)
        .json(&json!({"name": "events", "createRule": "", "fields": [{"name": "n", "type": "number"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = vec![];
    for w in 0..4 {
        let (client, url, acked) = (client.clone(), url.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..100_000 {
                let res = client
                    .post(format!("{url}/api/collections/events/records"))
                    .json(&json!({"n": w * 1_000_000 + i}))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 200 => {
                        let v: Value = match r.json().await {
                            Ok(v) => v,
                            Err(_) => return,
                        };
                        acked
                            .lock()
                            .unwrap()
                            .push(v["id"].as_str().unwrap().to_string());
                    }
                    _ => return,
                }
            }
        }));
    }
    // Let writes flow, then SIGKILL mid-stream.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 50,
        "enough writes were acknowledged before the kill: {}",
        acked.len()
    );
    let (mut child, url) = serve_with(&d, &db, &extra).await;
    let tok = su_token(&url).await;
    let stored: std::collections::HashSet<String> = all_ids(&client, &url, &tok, "events")
        .await
        .into_iter()
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged creates lost: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    // Every stored record's create event reaches JetStream once the restarted server catches up,
    // and no event exists for a write that was not committed.
    let events = nats_creates(&stream, stored.len()).await;
    let missing: Vec<&String> = stored.iter().filter(|id| !events.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} stored records have no event after the restart: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let phantom: Vec<&String> = events.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        phantom.is_empty(),
        "events without a committed record: {phantom:?}"
    );
    println!(
        "kill -9: {} acknowledged, {} stored, 0 lost; {} create events in NATS",
        acked.len(),
        stored.len(),
        events.len()
    );
    child.kill().unwrap();
    let _ = child.wait();
    let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap());
    let _ = js.delete_stream(&stream).await;
}

fn nats_url() -> String {
    std::env::var("BASALT_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Record ids of the create events in the stream, once at least `want` distinct ones are there.
async fn nats_creates(stream: &str, want: usize) -> std::collections::HashSet<String> {
    use futures_util::StreamExt;
    let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut ids = std::collections::HashSet::new();
        if let Ok(s) = js.get_stream(stream).await {
            let c = s
                .create_consumer(async_nats::jetstream::consumer::pull::Config {
                    ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
                    ..Default::default()
                })
                .await
                .unwrap();
            let mut msgs = c
                .fetch()
                .max_messages(100_000)
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .unwrap();
            while let Some(Ok(m)) = msgs.next().await {
                let v: Value = serde_json::from_slice(&m.payload).unwrap();
                if v["type"] == "basalt.record.created" {
                    ids.insert(v["data"]["record"]["id"].as_str().unwrap().to_string());
                }
            }
        }
        if ids.len() >= want || Instant::now() > deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_sqlite() {
    kill9_loses_no_acknowledged_write(None, "").await;
}

/// `synchronous = "normal"` acknowledges before the fsync: still safe against a process crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_sqlite_synchronous_normal() {
    kill9_loses_no_acknowledged_write(None, "[storage]\nsynchronous = \"normal\"\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_postgres() {
    kill9_loses_no_acknowledged_write(Some(fresh_pg().await), "").await;
}

/// The process's peak resident memory (VmHWM) in bytes.
fn peak_rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// The memory budget a 256 MiB upload and download must stay within: a server that buffered the
/// file would grow by at least its size.
const FILE_SIZE: usize = 256 << 20;
const MEMORY_BUDGET: u64 = 64 << 20;

/// A file four times larger than the server's memory budget goes up (multipart, streamed to a
/// temporary file, then renamed into storage) and comes back (streamed from storage) intact, and the
/// server's peak resident memory grows by less than the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_file_streams_within_memory_budget() {
    let dir = tmp();
    upsert(&dir, &None);
    let (mut child, url) = serve(&dir, &None).await;
    let token = su_token(&url).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/api/collections"))
        .header("Authorization", &token)
        .json(
            &json!({"name": "big", "type": "base", "createRule": "", "viewRule": "",
            "fields": [{"name": "blob", "type": "file", "maxSelect": 1, "maxSize": 1u64 << 30}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let before = peak_rss(child.id());

    let chunk: Vec<u8> = (0..1usize << 20).map(|i| (i % 251) as u8).collect();
    let b = "bigFileBoundary";
    let head = format!("--{b}\r\nContent-Disposition: form-data; name=\"blob\"; filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").into_bytes();
    let tail = format!("\r\n--{b}--\r\n").into_bytes();
    let parts = std::iter::once(head)
        .chain((0..FILE_SIZE >> 20).map(move |_| chunk.clone()))
        .chain(std::iter::once(tail))
        .map(Ok::<_, std::io::Error>);
    let r = http
        .post(format!("{url}/api/collections/big/records"))
        .header("Authorization", &token)
        .header("content-type", format!("multipart/form-data; boundary={b}"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            parts,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rec: Value = r.json().await.unwrap();
    let (id, name) = (
        rec["id"].as_str().unwrap().to_string(),
        rec["blob"].as_str().unwrap().to_string(),
    );

    use futures_util::StreamExt;
    let res = http
        .get(format!("{url}/api/files/big/{id}/{name}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.content_length(), Some(FILE_SIZE as u64));
    let mut got = 0usize;
    let mut body = res.bytes_stream();
    while let Some(c) = body.next().await {
        let c = c.unwrap();
        for (k, byte) in c.iter().enumerate() {
            assert_eq!(
                *byte as usize,
                ((got + k) % (1 << 20)) % 251,
                "byte {}",
                got + k
            );
        }
        got += c.len();
    }
    assert_eq!(got, FILE_SIZE);

    let after = peak_rss(child.id());
    eprintln!(
        "peak RSS {} MiB before, {} MiB after a {} MiB upload and download",
        before >> 20,
        after >> 20,
        FILE_SIZE >> 20
    );
    assert!(
        after.saturating_sub(before) < MEMORY_BUDGET,
        "peak resident memory grew by {} MiB for a {} MiB file (budget {} MiB)",
        after.saturating_sub(before) >> 20,
        FILE_SIZE >> 20,
        MEMORY_BUDGET >> 20
    );
    let _ = child.kill();
    let _ = child.wait();
}
