//! Chaos, on loopback and bounded in time: a PostgreSQL server crashed and restarted under write
//! load, the SQLite data directory running out of space on a small loop-mounted filesystem,
//! `kill -9` in the middle of a batch, a collection change, a backup and a PII key rotation, and
//! `count+` increments through three nodes. Each test prints its numbers (requests sent, failed,
//! acknowledged writes lost) and appends them to `$BASALT_CHAOS_REPORT` (printed by
//! `scripts/test.sh`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{
    all_ids, all_records, free_port, fresh_pg, get_json, serve_with, su_token, tmp, upsert, Dir,
    Proc,
};

fn report(line: &str) {
    println!("{line}");
    if let Ok(path) = std::env::var("BASALT_CHAOS_REPORT") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

async fn post(c: &reqwest::Client, url: &str, tok: &str, body: Value) -> (u16, Value) {
    let r = c
        .post(url)
        .header("Authorization", tok)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Turns the batch API on with room for `max` requests per batch.
async fn enable_batch(c: &reqwest::Client, url: &str, tok: &str, max: u32) {
    let r = c
        .patch(format!("{url}/api/settings"))
        .header("Authorization", tok)
        .json(&json!({"batch": {"enabled": true, "maxRequests": max}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

// ---------- PostgreSQL crashed and restarted under write load ----------

/// A private PostgreSQL server (initdb in a temporary folder, its own port), so crashing it
/// disturbs no other test. Run as the `postgres` user when the test runs as root.
struct PrivatePg {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    root: bool,
}

impl PrivatePg {
    fn init() -> PrivatePg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").is_file())
            .expect("PostgreSQL's server binaries (apt-get install postgresql)");
        let dir =
            std::env::temp_dir().join(format!("basalt-chaos-pg-{}", basalt_core::id::random_id(8)));
        std::fs::create_dir_all(&dir).unwrap();
        let pg = PrivatePg {
            bin,
            dir,
            port: free_port(),
            root: is_root(),
        };
        if pg.root {
            assert!(Command::new("chown")
                .args(["postgres:postgres", &pg.dir.display().to_string()])
                .status()
                .unwrap()
                .success());
        }
        let data = pg.dir.join("data").display().to_string();
        assert!(
            pg.run(
                "initdb",
                &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"]
            ),
            "initdb failed"
        );
        pg
    }

    fn run(&self, tool: &str, args: &[&str]) -> bool {
        let exe = self.bin.join(tool).display().to_string();
        let mut cmd = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &exe]);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn start(&self) {
        let data = self.dir.join("data").display().to_string();
        let log = self.dir.join("log").display().to_string();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        assert!(
            self.run(
                "pg_ctl",
                &["-D", &data, "-l", &log, "-o", &opts, "-w", "start"]
            ),
            "pg_ctl start failed (see {log})"
        );
    }

    /// `pg_ctl stop -m immediate`: the server dies without a checkpoint, as on a crash; committed
    /// transactions come back from the WAL.
    fn crash(&self) {
        let data = self.dir.join("data").display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Default)]
struct Tally {
    sent: u64,
    acked: Vec<String>,
    unavailable: u64,
    slowest_refusal: Duration,
    /// Answers that are neither a success nor a 503 (status, body), and transport errors (0).
    other: Vec<(u16, String)>,
    /// When the last 503 and the first success after it were seen.
    last_refusal: Option<Instant>,
    recovered: Option<Instant>,
}

/// Writers creating records until `stop`, every answer tallied.
fn writers(
    n: usize,
    client: &reqwest::Client,
    url: &str,
    coll: &str,
    tally: &Arc<Mutex<Tally>>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|w| {
            let (c, url, tally, stop) =
                (client.clone(), url.to_string(), tally.clone(), stop.clone());
            let coll = coll.to_string();
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let began = Instant::now();
                    let r = c
                        .post(format!("{url}/api/collections/{coll}/records"))
                        .json(&json!({"n": w as u64 * 1_000_000 + i}))
                        .send()
                        .await;
                    let took = began.elapsed();
                    // (status, id of a created record, whether a 503 carried Retry-After, body)
                    let (status, id, retry, body) = match r {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let retry = r.headers().get("retry-after").is_some();
                            let body = r.text().await.unwrap_or_default();
                            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                            let id = v["id"].as_str().unwrap_or("").to_string();
                            (status, id, retry && v["status"] == 503, body)
                        }
                        Err(e) => (0, String::new(), false, e.to_string()),
                    };
                    let refused = {
                        let mut t = tally.lock().unwrap();
                        t.sent += 1;
                        match status {
                            200 => {
                                t.acked.push(id);
                                if t.last_refusal.is_some() && t.recovered.is_none() {
                                    t.recovered = Some(Instant::now());
                                }
                            }
                            503 => {
                                t.unavailable += 1;
                                t.slowest_refusal = t.slowest_refusal.max(took);
                                t.last_refusal = Some(Instant::now());
                                t.recovered = None;
                                if !retry {
                                    t.other.push((503, body));
                                }
                            }
                            _ => t.other.push((status, body)),
                        }
                        status == 503
                    };
                    if refused {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect()
}

/// A collection `writes` and `n` writers creating records in it until [`Load::finish`].
struct Load {
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn start(n: usize, url: &str, tok: &str) -> (reqwest::Client, Load) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let (s, b) = post(
            &client,
            &format!("{url}/api/collections"),
            tok,
            json!({"name": "writes", "createRule": "", "fields": [{"name": "n", "type": "number"}]}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        let tally = Arc::new(Mutex::new(Tally::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = writers(n, &client, url, "writes", &tally, &stop);
        (client, Load { tally, stop, tasks })
    }

    async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        std::mem::take(&mut *self.tally.lock().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_under_write_load_answers_503_and_loses_nothing() {
    let pg = PrivatePg::init();
    pg.start();
    let db = Some(pg.url());
    let d = tmp();
    upsert(&d, &db);
    let (child, url) = serve_with(&d, &db, &[]).await;
    let _server = Proc(child);
    let tok = su_token(&url).await;
    let (client, load) = Load::start(4, &url, &tok).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.crash();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    // While it is down: readiness says so.
    let ready = client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "/readyz while the database is down");
    pg.start();
    let up = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while load.tally.lock().unwrap().recovered.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = load.finish().await;
    let stored: std::collections::HashSet<String> = all_ids(&client, &url, &tok, "writes")
        .await
        .into_iter()
        .collect();
    let lost: Vec<&String> = t.acked.iter().filter(|id| !stored.contains(*id)).collect();
    let recovered_after = t.recovered.map(|r| r.saturating_duration_since(up));
    report(&format!(
        "chaos postgres crash (4 s down): {} requests, {} answered 503 (slowest {} ms), {} other failures, {} acknowledged, {} lost; writes succeed again {} ms after the restart",
        t.sent,
        t.unavailable,
        t.slowest_refusal.as_millis(),
        t.other.len(),
        t.acked.len(),
        lost.len(),
        recovered_after.map_or(-1, |d| d.as_millis() as i64),
    ));
    assert!(
        t.other.is_empty(),
        "answers other than 200/503: {:?}",
        &t.other[..t.other.len().min(5)]
    );
    assert!(
        t.unavailable > 0,
        "the outage was not seen ({:?})",
        down.elapsed()
    );
    assert!(
        t.slowest_refusal < Duration::from_secs(6),
        "a refusal took {:?}: requests hang while the database is down",
        t.slowest_refusal
    );
    assert!(
        recovered_after.is_some(),
        "writes did not succeed again after the restart"
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

// ---------- SQLite out of disk space ----------

/// A small ext4 filesystem in a file, loop-mounted (root only); unmounted and removed on drop.
struct SmallDisk {
    img: PathBuf,
    mnt: PathBuf,
}

impl SmallDisk {
    fn mount(mib: u64) -> SmallDisk {
        let base = std::env::temp_dir().join(format!(
            "basalt-chaos-disk-{}",
            basalt_core::id::random_id(8)
        ));
        let (img, mnt) = (base.with_extension("img"), base);
        std::fs::create_dir_all(&mnt).unwrap();
        let f = std::fs::File::create(&img).unwrap();
        f.set_len(mib << 20).unwrap();
        let ok = |c: &mut Command| {
            c.stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success()
        };
        // -m 0: no blocks reserved for root (the test runs as root and must hit the limit).
        assert!(
            ok(Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0"])
                .arg(&img)),
            "mkfs.ext4"
        );
        assert!(
            ok(Command::new("mount")
                .args(["-o", "loop"])
                .arg(&img)
                .arg(&mnt)),
            "mount -o loop"
        );
        SmallDisk { img, mnt }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        let _ = std::fs::remove_dir_all(&self.mnt);
        let _ = std::fs::remove_file(&self.img);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_disk_full_refuses_writes_clearly_and_recovers() {
    if !is_root() {
        // Mounting a filesystem needs root; CI runs the suite as root (see scripts/test.sh).
        eprintln!("sqlite_disk_full: skipped, needs root to loop-mount a small filesystem");
        return;
    }
    let disk = SmallDisk::mount(48);
    let d = Dir(disk.mnt.join("data"));
    std::fs::create_dir_all(&d.0).unwrap();
    // Space held back, given back later to show the server recovers by itself.
    let ballast = disk.mnt.join("ballast");
    std::fs::write(&ballast, vec![7u8; 8 << 20]).unwrap();
    upsert(&d, &None);
    let (child, url) = serve_with(&d, &None, &[]).await;
    let mut server = Proc(child);
    let tok = su_token(&url).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (s, b) = post(
        &client,
        &format!("{url}/api/collections"),
        &tok,
        json!({"name": "blobs", "createRule": "", "listRule": "", "fields": [{"name": "t", "type": "text", "max": 100000}]}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let blob = "x".repeat(60_000);
    let (mut sent, mut acked, mut refused, mut other) = (0u64, vec![], 0u64, vec![]);
    let mut full_message = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while refused < 20 && Instant::now() < deadline {
        sent += 1;
        let (s, b) = post(
            &client,
            &format!("{url}/api/collections/blobs/records"),
            "",
            json!({"t": blob}),
        )
        .await;
        match s {
            200 => acked.push(b["id"].as_str().unwrap().to_string()),
            503 => {
                refused += 1;
                full_message = b["message"].as_str().unwrap_or("").to_string();
            }
            _ => other.push((s, b.to_string())),
        }
    }
    assert!(
        refused >= 20,
        "the disk never filled: {} acknowledged",
        acked.len()
    );
    assert!(
        full_message.contains("disk is full"),
        "message: {full_message}"
    );
    // Reads go on while writes are refused.
    let r = client
        .get(format!(
            "{url}/api/collections/blobs/records?perPage=1&fields=id"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a read while the disk is full");
    // Space comes back: writes succeed again without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let mut recovered = None;
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(20) {
        let (s, b) = post(
            &client,
            &format!("{url}/api/collections/blobs/records"),
            "",
            json!({"t": "small"}),
        )
        .await;
        sent += 1;
        if s == 200 {
            acked.push(b["id"].as_str().unwrap().to_string());
            recovered = Some(began.elapsed());
            break;
        }
        if s != 503 {
            other.push((s, b.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A restart finds every acknowledged write, in a database SQLite finds intact.
    let _ = server.0.kill();
    let _ = server.0.wait();
    let conn = rusqlite::Connection::open(d.0.join("data.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    drop(conn);
    let (child, url) = serve_with(&d, &None, &[]).await;
    let _server = Proc(child);
    let tok = su_token(&url).await;
    let stored: std::collections::HashSet<String> = all_ids(&client, &url, &tok, "blobs")
        .await
        .into_iter()
        .collect();
    let lost = acked.iter().filter(|id| !stored.contains(*id)).count();
    report(&format!(
        "chaos sqlite disk full (48 MiB ext4): {sent} requests, {refused} answered 503 \"{full_message}\", {} other failures, {} acknowledged, {lost} lost; writes succeed again {} ms after space is freed; integrity_check: {check}",
        other.len(),
        acked.len(),
        recovered.map_or(-1, |d| d.as_millis() as i64)
    ));
    assert!(
        other.is_empty(),
        "answers other than 200/503: {:?}",
        &other[..other.len().min(3)]
    );
    assert!(
        recovered.is_some(),
        "writes did not succeed again after space was freed"
    );
    assert_eq!(check, "ok");
    assert_eq!(lost, 0);
    drop(disk);
}

// ---------- kill -9 in the middle of an operation ----------

/// `kill -9` while batches of 100 creates run: after the restart every batch is all there or
/// not there at all, and every acknowledged batch is there.
async fn kill9_mid_batch(db: Option<String>) {
    let d = tmp();
    upsert(&d, &db);
    let (child, url) = serve_with(&d, &db, &[]).await;
    let mut server = Proc(child);
    let tok = su_token(&url).await;
    let c = reqwest::Client::new();
    enable_batch(&c, &url, &tok, 200).await;
    let (s, b) = post(
        &c,
        &format!("{url}/api/collections"),
        &tok,
        json!({"name": "items", "createRule": "", "fields": [{"name": "batch", "type": "number"}]}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let sent = Arc::new(Mutex::new(0u64));
    let task = {
        let (c, url, acked, sent) = (c.clone(), url.clone(), acked.clone(), sent.clone());
        tokio::spawn(async move {
            for n in 1u64.. {
                let requests: Vec<Value> = (0..100)
                    .map(|_| json!({"method": "POST", "url": "/api/collections/items/records", "body": {"batch": n}}))
                    .collect();
                *sent.lock().unwrap() += 1;
                match c
                    .post(format!("{url}/api/batch"))
                    .json(&json!({"requests": requests}))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().push(n),
                    _ => return,
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Kill while a batch is in flight (the writer always has one running).
    tokio::time::sleep(Duration::from_millis(37)).await;
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let _ = task.await;
    let (child, url) = serve_with(&d, &db, &[]).await;
    let _server = Proc(child);
    let tok = su_token(&url).await;
    let mut per_batch = std::collections::BTreeMap::<u64, u64>::new();
    for i in all_records(&c, &url, &tok, "items", "batch").await {
        *per_batch.entry(i["batch"].as_u64().unwrap()).or_default() += 1;
    }
    let acked = acked.lock().unwrap().clone();
    let partial: Vec<(&u64, &u64)> = per_batch.iter().filter(|(_, n)| **n != 100).collect();
    let lost: Vec<&u64> = acked
        .iter()
        .filter(|b| !per_batch.contains_key(*b))
        .collect();
    report(&format!(
        "chaos kill -9 mid-batch ({:?}): {} batches of 100 sent, {} acknowledged, {} stored whole, {} partial, {} acknowledged lost",
        if db.is_some() { "postgres" } else { "sqlite" },
        *sent.lock().unwrap(),
        acked.len(),
        per_batch.len(),
        partial.len(),
        lost.len()
    ));
    assert!(partial.is_empty(), "batches stored in part: {partial:?}");
    assert!(lost.is_empty(), "acknowledged batches lost: {lost:?}");
    assert!(acked.len() >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_batch_sqlite() {
    kill9_mid_batch(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_batch_postgres() {
    kill9_mid_batch(Some(fresh_pg().await)).await;
}

/// `kill -9` during a collection change that rebuilds a table of 20,000 rows (a new field with an
/// index) and during a backup: after the restart the collection has either its old or its new
/// definition, matching its table, with every row; a backup listed is one that restores.
async fn kill9_mid_schema_change_and_backup(db: Option<String>) {
    let d = tmp();
    upsert(&d, &db);
    let (child, url) = serve_with(&d, &db, &[]).await;
    let mut server = Proc(child);
    let tok = su_token(&url).await;
    let c = reqwest::Client::new();
    let (s, coll) = post(
        &c,
        &format!("{url}/api/collections"),
        &tok,
        json!({"name": "rows", "fields": [{"name": "n", "type": "number"}, {"name": "t", "type": "text"}]}),
    )
    .await;
    assert_eq!(s, 200, "{coll}");
    const ROWS: usize = 20_000;
    enable_batch(&c, &url, &tok, 1000).await;
    for chunk in 0..ROWS / 1000 {
        let requests: Vec<Value> = (0..1000)
            .map(|i| json!({"method": "POST", "url": "/api/collections/rows/records", "body": {"n": chunk * 1000 + i, "t": "some text to copy"}}))
            .collect();
        let (s, b) = post(
            &c,
            &format!("{url}/api/batch"),
            &tok,
            json!({"requests": requests}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
    let mut fields = coll["fields"].as_array().unwrap().clone();
    fields.push(json!({"name": "added", "type": "text"}));
    let change = {
        let (c, url, tok) = (c.clone(), url.clone(), tok.clone());
        tokio::spawn(async move {
            c.patch(format!("{url}/api/collections/rows"))
                .header("Authorization", &tok)
                .json(&json!({"fields": fields, "indexes": ["CREATE INDEX idx_rows_added ON rows (added, n)"]}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    // The change takes ~10 ms (SQLite) to ~50 ms (PostgreSQL) on 20,000 rows here: the kill lands inside it (the report says
    // whether it did: no answer).
    tokio::time::sleep(Duration::from_millis(if db.is_some() { 12 } else { 4 })).await;
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let change_answer = change.await.unwrap().ok();

    let (child, url) = serve_with(&d, &db, &[]).await;
    let mut server = Proc(child);
    let tok = su_token(&url).await;
    let def: Value = get_json(&c, format!("{url}/api/collections/rows"), &tok).await;
    let has_added = def["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "added");
    if change_answer == Some(200) {
        assert!(has_added, "an acknowledged collection change was lost");
    }
    // The table matches the definition: a write naming every field succeeds, and filters on them work.
    let mut body = json!({"n": -1, "t": "after"});
    if has_added {
        body["added"] = json!("yes");
    }
    let (s, b) = post(
        &c,
        &format!("{url}/api/collections/rows/records"),
        &tok,
        body,
    )
    .await;
    assert_eq!(s, 200, "a create after the restart: {b}");
    let filter = if has_added { "added = 'yes'" } else { "n = -1" };
    let r: Value = c
        .get(format!("{url}/api/collections/rows/records"))
        .query(&[("filter", filter)])
        .header("Authorization", &tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["totalItems"], 1, "{r}");
    let total: Value = get_json(
        &c,
        format!("{url}/api/collections/rows/records?perPage=1"),
        &tok,
    )
    .await;
    assert_eq!(
        total["totalItems"],
        json!(ROWS + 1),
        "rows after the killed change"
    );
    report(&format!(
        "chaos kill -9 mid collection change ({}): answered {:?}, after restart the change is {}, {} of {} rows kept, 0 lost",
        if db.is_some() { "postgres" } else { "sqlite" },
        change_answer,
        if has_added { "applied" } else { "rolled back" },
        total["totalItems"],
        ROWS + 1
    ));

    // A backup killed half-way (SQLite only: PostgreSQL answers "use pg_dump").
    if db.is_some() {
        return;
    }
    let backup = {
        let (c, url, tok) = (c.clone(), url.clone(), tok.clone());
        tokio::spawn(async move {
            c.post(format!("{url}/api/backups"))
                .header("Authorization", &tok)
                .json(&json!({"name": "killed.zip"}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(40)).await;
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let backup_answer = backup.await.unwrap().ok();
    let (child, url) = serve_with(&d, &db, &[]).await;
    let _server = Proc(child);
    let tok = su_token(&url).await;
    let list: Value = get_json(&c, format!("{url}/api/backups"), &tok).await;
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["key"] == "killed.zip");
    if backup_answer == Some(204) {
        assert!(listed, "an acknowledged backup is missing");
    }
    if listed {
        let r = c
            .post(format!("{url}/api/backups/killed.zip/restore"))
            .header("Authorization", &tok)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            204,
            "a listed backup must restore: {}",
            r.text().await.unwrap()
        );
    }
    report(&format!(
        "chaos kill -9 mid backup (sqlite): answered {backup_answer:?}; after restart the backup is {}",
        if listed { "listed and restores" } else { "not listed (no partial archive)" }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_schema_change_and_backup_sqlite() {
    kill9_mid_schema_change_and_backup(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_schema_change_postgres() {
    kill9_mid_schema_change_and_backup(Some(fresh_pg().await)).await;
}

// ---------- count+ through three nodes ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_increments_through_three_nodes_add_up() {
    let db = Some(fresh_pg().await);
    let dirs: Vec<Dir> = (0..3).map(|_| tmp()).collect();
    upsert(&dirs[0], &db);
    let mut nodes = vec![];
    let mut urls = vec![];
    for d in &dirs {
        let (child, url) = serve_with(d, &db, &[]).await;
        nodes.push(Proc(child));
        urls.push(url);
    }
    let tok = su_token(&urls[0]).await;
    let c = reqwest::Client::new();
    let (s, b) = post(
        &c,
        &format!("{}/api/collections", urls[0]),
        &tok,
        json!({"name": "counters", "createRule": "", "viewRule": "", "updateRule": "", "fields": [{"name": "count", "type": "number"}]}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // The collection reaches the other nodes through cross-node messages.
    let (s, rec) = post(
        &c,
        &format!("{}/api/collections/counters/records", urls[0]),
        "",
        json!({"count": 0}),
    )
    .await;
    assert_eq!(s, 200, "{rec}");
    let id = rec["id"].as_str().unwrap().to_string();
    for u in &urls {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = c
                .get(format!("{u}/api/collections/counters/records/{id}"))
                .send()
                .await
                .unwrap();
            if r.status() == 200 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    const PER_TASK: u64 = 50;
    let mut tasks = vec![];
    for (n, u) in urls.iter().enumerate() {
        for _ in 0..4 {
            let (c, u, id) = (c.clone(), u.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let mut ok = 0u64;
                let mut failed = vec![];
                for _ in 0..PER_TASK {
                    let r = c
                        .patch(format!("{u}/api/collections/counters/records/{id}"))
                        .json(&json!({"count+": 1}))
                        .send()
                        .await
                        .unwrap();
                    if r.status() == 200 {
                        ok += 1;
                    } else {
                        failed.push((n, r.status().as_u16(), r.text().await.unwrap_or_default()));
                    }
                }
                (ok, failed)
            }));
        }
    }
    let (mut ok, mut failed) = (0u64, vec![]);
    for t in tasks {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    let got: Value = c
        .get(format!("{}/api/collections/counters/records/{id}", urls[2]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    report(&format!(
        "chaos counter: {} count+ requests through 3 nodes, {ok} acknowledged, {} failed, final count {}",
        3 * 4 * PER_TASK,
        failed.len(),
        got["count"]
    ));
    assert!(failed.is_empty(), "{:?}", &failed[..failed.len().min(3)]);
    assert_eq!(got["count"], json!(ok), "increments lost or doubled");
    assert_eq!(ok, 3 * 4 * PER_TASK);
}

// ---------- kill -9 during a PII key rotation ----------

const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

async fn serve_with_keys(d: &Dir, db: &Option<String>, keys: &str) -> (Proc, String) {
    let file = d.0.join("pii-keys.toml");
    std::fs::write(&file, keys).unwrap();
    let cfg = d.0.join("basalt.toml");
    std::fs::write(&cfg, format!("[pii]\nkeys_file = \"{}\"\n", file.display())).unwrap();
    let (child, url) =
        serve_with(d, db, &["--config".to_string(), cfg.display().to_string()]).await;
    (Proc(child), url)
}

async fn pii_status(c: &reqwest::Client, url: &str, tok: &str) -> Value {
    get_json(c, format!("{url}/api/pii/rotate"), tok).await
}

fn behind(s: &Value) -> i64 {
    s["rotation"]["behind"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_i64).sum())
}

/// Every record's PII reads back as written (superuser), page by page.
async fn pii_values_intact(c: &reqwest::Client, url: &str, tok: &str, rows: usize) {
    let items = all_records(c, url, tok, "people", "n,ssn").await;
    for i in &items {
        let n = i["n"].as_i64().unwrap();
        assert_eq!(i["ssn"], json!(format!("SSN-{n:06}")), "record {i}");
    }
    let seen = items.len();
    assert_eq!(seen, rows);
}

async fn kill9_mid_pii_rotation(db: Option<String>) {
    const ROWS: usize = 3000;
    let d = tmp();
    upsert(&d, &db);
    let (mut server, url) = serve_with_keys(
        &d,
        &db,
        &format!("primary = \"k1\"\n[keys]\nk1 = \"{K1}\"\n"),
    )
    .await;
    let tok = su_token(&url).await;
    let c = reqwest::Client::new();
    let (s, b) = post(
        &c,
        &format!("{url}/api/collections"),
        &tok,
        json!({"name": "people", "fields": [{"name": "n", "type": "number"}, {"name": "ssn", "type": "text", "pii": {"mask": "last4", "searchable": true}}]}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    enable_batch(&c, &url, &tok, 500).await;
    for chunk in 0..ROWS / 500 {
        let requests: Vec<Value> = (0..500)
            .map(|i| {
                let n = chunk * 500 + i;
                json!({"method": "POST", "url": "/api/collections/people/records", "body": {"n": n, "ssn": format!("SSN-{n:06}")}})
            })
            .collect();
        let (s, b) = post(
            &c,
            &format!("{url}/api/batch"),
            &tok,
            json!({"requests": requests}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    // k2 becomes primary; k1 stays to read. Rotate, and kill the server half-way.
    let both = format!("primary = \"k2\"\n[keys]\nk1 = \"{K1}\"\nk2 = \"{K2}\"\n");
    let (mut server, url) = serve_with_keys(&d, &db, &both).await;
    let tok = su_token(&url).await;
    assert_eq!(behind(&pii_status(&c, &url, &tok).await), ROWS as i64);
    let (s, b) = post(&c, &format!("{url}/api/pii/rotate"), &tok, json!({})).await;
    assert_eq!(s, 200, "{b}");
    let mut at_kill = ROWS as i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        at_kill = behind(&pii_status(&c, &url, &tok).await);
        if at_kill < ROWS as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    // After the kill: every value reads back, and the rotation finishes when run again.
    let (server, url) = serve_with_keys(&d, &db, &both).await;
    let tok = su_token(&url).await;
    let after_restart = behind(&pii_status(&c, &url, &tok).await);
    pii_values_intact(&c, &url, &tok, ROWS).await;
    let (s, b) = post(&c, &format!("{url}/api/pii/rotate"), &tok, json!({})).await;
    assert_eq!(s, 200, "{b}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while behind(&pii_status(&c, &url, &tok).await) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        behind(&pii_status(&c, &url, &tok).await),
        0,
        "the rotation did not finish"
    );
    drop(server);
    // Only k2 left: everything still reads, so no record was left under k1.
    let (_server, url) = serve_with_keys(
        &d,
        &db,
        &format!("primary = \"k2\"\n[keys]\nk2 = \"{K2}\"\n"),
    )
    .await;
    let tok = su_token(&url).await;
    pii_values_intact(&c, &url, &tok, ROWS).await;
    report(&format!(
        "chaos kill -9 mid PII rotation ({}): {ROWS} records, killed with {at_kill} behind ({after_restart} after restart), rotation resumed to 0; all {ROWS} values read back under the new key alone, 0 lost",
        if db.is_some() { "postgres" } else { "sqlite" }
    ));
    assert!(
        at_kill > 0,
        "the rotation finished before the kill: make ROWS larger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_pii_rotation_sqlite() {
    kill9_mid_pii_rotation(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_pii_rotation_postgres() {
    kill9_mid_pii_rotation(Some(fresh_pg().await)).await;
}

// ---------- RabbitMQ killed (-9) and restarted under write load ----------

/// A private RabbitMQ node (its own name, ports and data folder, beside the machine's), so killing
/// it disturbs no other test.
struct PrivateRabbit {
    dir: PathBuf,
    port: u16,
    dist: u16,
    node: String,
    child: Option<std::process::Child>,
}

impl PrivateRabbit {
    fn new() -> PrivateRabbit {
        let tag = basalt_core::id::random_id(8);
        let dir = std::env::temp_dir().join(format!("basalt-chaos-rmq-{tag}"));
        std::fs::create_dir_all(dir.join("mnesia")).unwrap();
        std::fs::create_dir_all(dir.join("log")).unwrap();
        let port = free_port();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{port}\n"),
        )
        .unwrap();
        let cookie = dir.join(".erlang.cookie");
        std::fs::write(&cookie, format!("BASALTCHAOS{tag}")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400)).unwrap();
        PrivateRabbit {
            dir,
            port,
            dist: free_port(),
            node: format!("basaltchaos{tag}@localhost"),
            child: None,
        }
    }

    async fn start(&mut self) {
        let d = &self.dir;
        let child = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .current_dir(d)
            .env("HOME", d)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_DIST_PORT", self.dist.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("RabbitMQ (apt-get install rabbitmq-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the private RabbitMQ did not start"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILL to the node's Erlang VM (the script's child) and the script. The VM is found by its
    /// node name and by its home folder (the name was not always on its command line: a node from
    /// this test once outlived it).
    fn kill9(&mut self) {
        for pattern in [self.node.clone(), self.dir.display().to_string()] {
            let _ = Command::new("pkill").args(["-9", "-f", &pattern]).status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_killed_and_restarted_loses_no_event() {
    let mut rmq = PrivateRabbit::new();
    rmq.start().await;
    let d = tmp();
    upsert(&d, &None);
    let cfg = d.0.join("basalt.toml");
    std::fs::write(
        &cfg,
        format!(
            "[events.rabbitmq]\nurl = \"{}\"\nexchange = \"basalt\"\nqueue = \"basalt.events\"\n",
            rmq.url()
        ),
    )
    .unwrap();
    let (child, url) = serve_with(
        &d,
        &None,
        &["--config".to_string(), cfg.display().to_string()],
    )
    .await;
    let _server = Proc(child);
    let tok = su_token(&url).await;
    let (_client, load) = Load::start(2, &url, &tok).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    rmq.kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    rmq.start().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = load.finish().await;
    // Every acknowledged create's event is in the durable queue, after the sink catches up.
    let conn = lapin::Connection::connect(
        &rmq.url(),
        lapin::ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio),
    )
    .await
    .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut events = std::collections::HashSet::new();
    let mut messages = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while events.len() < t.acked.len() && Instant::now() < deadline {
        match ch
            .basic_get(
                "basalt.events",
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            Some(m) => {
                messages += 1;
                let v: Value = serde_json::from_slice(&m.delivery.data).unwrap();
                if v["data"]["action"] == "create" {
                    let rid = v["subject"]
                        .as_str()
                        .unwrap()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .to_string();
                    events.insert(rid);
                }
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let lost: Vec<&String> = t.acked.iter().filter(|id| !events.contains(*id)).collect();
    report(&format!(
        "chaos rabbitmq kill -9 (down ~2 s + restart): {} requests, {} failed, {} acknowledged, {} messages read ({} duplicates), {} events lost",
        t.sent,
        t.other.len() + t.unavailable as usize,
        t.acked.len(),
        messages,
        messages.saturating_sub(events.len() as u64),
        lost.len()
    ));
    assert!(
        t.other.is_empty() && t.unavailable == 0,
        "the API failed while the broker was down: {:?}",
        &t.other[..t.other.len().min(3)]
    );
    assert!(
        lost.is_empty(),
        "{} events lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}
