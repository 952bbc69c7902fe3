//! Three nodes on one PostgreSQL and one Redis behind HAProxy (Debian's), as README "Running a
//! cluster" runs them:
//! 1. a collection made on one node is used on the others at once; a realtime client whose stream
//!    is on node B (its subscription POSTed through node C) gets every write made on node A; a row
//!    cached on B is refreshed after an update on A (the bound is measured and printed); the writer
//!    always reads its own write;
//! 2. a rolling restart of all three (SIGTERM, wait, start again) under continuous reads and writes
//!    through the balancer fails no request, loses no acknowledged write, and the NATS sink (run by
//!    whichever node holds its lease) gets the event of every write.

use super::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

fn redis_url() -> String {
    std::env::var("BASALT_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

struct Node {
    port: u16,
    dir: Dir,
    child: Option<Child>,
    /// `--target`: `api` behind the balancer, `worker` beside it.
    target: &'static str,
}

impl Node {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    fn start(&mut self, db: &str, cfg: &std::path::Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.0.join("node.log"))
            .unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--http", &format!("127.0.0.1:{}", self.port)])
            .args(["--target", self.target])
            .args(["--dir", &self.dir.0.display().to_string()])
            .args(["--database-url", db, "--redis-url", &redis_url()])
            .args(["--config", &cfg.display().to_string()])
            .env("BASALT_DRAIN_DELAY_MS", "1000")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }
    /// SIGTERM, then the exit status (the node drains first).
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        assert!(Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "node did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reqwest::get(format!("{url}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not become ready");
}

struct Haproxy(Child);
impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy(dir: &Dir, port: u16, nodes: &[u16]) -> Haproxy {
    let bin = std::env::var("BASALT_HAPROXY").unwrap_or_else(|_| "haproxy".into());
    let mut cfg = format!(
        "global\n  maxconn 4096\n\
         defaults\n  mode http\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n\
         \x20 option redispatch\n  retries 3\n  retry-on conn-failure\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
         backend be\n  balance roundrobin\n  option httpchk GET /readyz\n\
         \x20 default-server inter 100ms fall 2 rise 2\n"
    );
    for (i, p) in nodes.iter().enumerate() {
        cfg.push_str(&format!("  server n{i} 127.0.0.1:{p} check\n"));
    }
    let path = dir.0.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new(&bin)
        .args(["-f", &path.display().to_string(), "-db"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin} (scripts/services.sh installs haproxy): {e}"));
    Haproxy(child)
}

/// A realtime client: the stream on `stream_base`, the subscription POSTed to `post_base`. Sends
/// each received record id; reconnects when the stream ends until `stop`. Counts reconnects.
async fn subscriber(
    stream_base: String,
    post_base: String,
    topic: String,
    seen: Arc<Mutex<Vec<(String, Instant)>>>,
    stop: Arc<AtomicBool>,
    reconnects: Arc<AtomicU64>,
    subscribed: Arc<AtomicU64>,
) {
    let http = reqwest::Client::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut resp) = http.get(format!("{stream_base}/api/realtime")).send().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut buf = String::new();
        loop {
            let chunk = tokio::select! {
                c = resp.chunk() => c,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stop.load(Ordering::Relaxed) { return; }
                    continue;
                }
            };
            let Ok(Some(chunk)) = chunk else { break };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let mut event = "";
                let mut data = "";
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = v;
                    }
                }
                let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                if event == "PB_CONNECT" {
                    let r = http
                        .post(format!("{post_base}/api/realtime"))
                        .json(&json!({"clientId": v["clientId"], "subscriptions": [topic]}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(
                        r.status(),
                        204,
                        "subscribing: {}",
                        r.text().await.unwrap_or_default()
                    );
                    subscribed.fetch_add(1, Ordering::Relaxed);
                } else if event == topic {
                    if let Some(id) = v["record"]["id"].as_str() {
                        seen.lock().unwrap().push((id.to_string(), Instant::now()));
                    }
                }
            }
        }
        reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// The load of the rolling-restart phase, shared by its tasks.
struct Load {
    http: reqwest::Client,
    lb: String,
    stop: Arc<AtomicBool>,
    acked: Mutex<Vec<String>>,
    requests: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Load {
    fn fail(&self, what: &str, e: impl std::fmt::Display) {
        self.failures.lock().unwrap().push(format!("{what}: {e}"));
    }
}

/// Creates records through the balancer until stopped, noting each acknowledged id.
async fn writer(l: Arc<Load>, w: u64) {
    let mut i = 0;
    while !l.stop.load(Ordering::Relaxed) {
        i += 1;
        l.requests.fetch_add(1, Ordering::Relaxed);
        let r = l
            .http
            .post(format!("{}/api/collections/items/records", l.lb))
            .json(&json!({"n": w * 1_000_000 + i}))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 200 => {
                let v: Value = r.json().await.unwrap();
                l.acked
                    .lock()
                    .unwrap()
                    .push(v["id"].as_str().unwrap().to_string());
            }
            Ok(r) => l.fail("create", r.status()),
            Err(e) => l.fail("create", e),
        }
    }
}

/// Reads acknowledged records through the balancer until stopped.
async fn reader(l: Arc<Load>) {
    let mut k = 0usize;
    while !l.stop.load(Ordering::Relaxed) {
        let id = {
            let a = l.acked.lock().unwrap();
            k = k.wrapping_mul(31).wrapping_add(7);
            (!a.is_empty()).then(|| a[k % a.len()].clone())
        };
        let Some(id) = id else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        l.requests.fetch_add(1, Ordering::Relaxed);
        match l
            .http
            .get(format!("{}/api/collections/items/records/{id}", l.lb))
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => {}
            Ok(r) => l.fail("read", r.status()),
            Err(e) => l.fail("read", e),
        }
    }
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_behind_haproxy_roll_without_failing_a_request() {
    let db = fresh_pg().await;
    let shared = tmp();
    upsert(&shared, &Some(db.clone()));
    let tag = basalt_core::id::random_id(8).to_uppercase();
    let stream = format!("BASALT_CLUSTER_{tag}");
    let cfg = shared.0.join("basalt.toml");
    std::fs::write(
        &cfg,
        format!(
            "[events.nats]\nurl = \"{}\"\nstream = \"{stream}\"\nsubject_prefix = \"cluster{}\"\n",
            nats_url(),
            tag.to_lowercase()
        ),
    )
    .unwrap();
    // Three `api` nodes serve behind the balancer and deliver no events; one `worker` beside them
    // runs the sinks (the NATS sink here), webhooks and pruning, and serves no API.
    let mut nodes: Vec<Node> = (0..3)
        .map(|_| Node {
            port: free_port(),
            dir: tmp(),
            child: None,
            target: "api",
        })
        .collect();
    // The first node creates the schema; the others start together.
    nodes[0].start(&db, &cfg);
    wait_ready(&nodes[0].url()).await;
    nodes[1].start(&db, &cfg);
    nodes[2].start(&db, &cfg);
    let mut worker = Node {
        port: free_port(),
        dir: tmp(),
        child: None,
        target: "worker",
    };
    worker.start(&db, &cfg);
    for n in &nodes[1..] {
        wait_ready(&n.url()).await;
    }
    wait_ready(&worker.url()).await;
    // The worker serves its probes and no API.
    let r = reqwest::get(format!("{}/api/health", worker.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a worker serves no public API");
    let lb_port = free_port();
    let _lb = haproxy(
        &shared,
        lb_port,
        &nodes.iter().map(|n| n.port).collect::<Vec<_>>(),
    );
    let lb = format!("http://127.0.0.1:{lb_port}");
    wait_ready(&lb).await;
    let (a, b, c) = (nodes[0].url(), nodes[1].url(), nodes[2].url());
    let http = reqwest::Client::new();

    // ---- 1. one cluster, seen from any node ----
    let tok = su_token(&a).await;
    // An api node runs no sink: its health lists none (the worker holds them).
    let h: Value = http
        .get(format!("{a}/api/health"))
        .header("Authorization", &tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["data"]["events"]["sinks"], json!([]), "{h}");
    // GraphQL on node B and C, before the collection exists: their schemas are built without it.
    let gql = |url: String, q: &'static str| {
        let http = http.clone();
        async move {
            let v: Value = http
                .post(format!("{url}/api/graphql"))
                .json(&json!({ "query": q }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v
        }
    };
    for url in [&b, &c] {
        let v = gql(url.clone(), "{ items { totalItems } }").await;
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .unwrap_or("")
                .contains("items"),
            "{v}"
        );
    }
    let r = http
        .post(format!("{a}/api/collections"))
        .header("Authorization", &tok)
        .json(&json!({"name": "items", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
                      "fields": [{"name": "n", "type": "number"}, {"name": "title", "type": "text"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // The other nodes know the collection as soon as the message arrives.
    for url in [&b, &c] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = http
                .get(format!("{url}/api/collections/items/records"))
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{url} never saw the new collection"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Their GraphQL schemas follow without a restart.
        let v = gql(url.clone(), "{ items { totalItems } }").await;
        assert_eq!(v["data"]["items"]["totalItems"], json!(0), "{url}: {v}");
    }
    // Request logs live in the shared database: node C lists the collection create made on node A.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs: Value = http
            .get(format!("{c}/api/logs"))
            .query(&[(
                "filter",
                "data.method = 'POST' && data.url = '/api/collections'",
            )])
            .header("Authorization", &tok)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // The page and its count are two reads: an entry written between them is counted but not
        // listed yet, so wait for the entry itself.
        if logs["items"].as_array().map(Vec::len) == Some(1) {
            assert_eq!(logs["items"][0]["data"]["auth"], "_superusers", "{logs}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node C never saw node A's request log: {logs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every node sees the four: three api nodes and the worker (views refresh with each 2 s heartbeat).
    let deadline = Instant::now() + Duration::from_secs(6);
    let health = loop {
        let h: Value = http
            .get(format!("{b}/api/health"))
            .header("Authorization", &tok)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ready: Vec<&str> = h["data"]["cluster"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["live"] == true && n["state"] == "ready")
            .filter_map(|n| n["role"].as_str())
            .collect();
        let apis = ready.iter().filter(|r| **r == "api").count();
        let workers = ready.iter().filter(|r| **r == "worker").count();
        if apis == 3 && workers == 1 {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "cluster view never showed 3 api nodes and 1 worker ready: {h}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(health["data"]["cluster"]["transport"], "redis");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let reconnects = Arc::new(AtomicU64::new(0));
    let sub = tokio::spawn(subscriber(
        b.clone(),
        c.clone(),
        "items/*".into(),
        seen.clone(),
        stop.clone(),
        reconnects.clone(),
        Arc::new(AtomicU64::new(0)),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut sent = Vec::new();
    for i in 0..50 {
        let r: Value = http
            .post(format!("{a}/api/collections/items/records"))
            .json(&json!({"n": i}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        sent.push((r["id"].as_str().unwrap().to_string(), Instant::now()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < sent.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sub.await;
    let got = seen.lock().unwrap().clone();
    let mut lat = Vec::new();
    for (id, at) in &sent {
        let r = got.iter().find(|(g, _)| g == id);
        assert!(
            r.is_some(),
            "event of {id} (written on A) never reached the client on B"
        );
        lat.push(r.unwrap().1.saturating_duration_since(*at).as_secs_f64() * 1000.0);
    }
    // Cache: B caches the row, A updates it, B serves the new row within the bound.
    let mut stale = Vec::new();
    for (i, (id, _)) in sent.iter().take(20).enumerate() {
        for _ in 0..2 {
            let r = http
                .get(format!("{b}/api/collections/items/records/{id}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let title = format!("t{i}");
        let r = http
            .patch(format!("{a}/api/collections/items/records/{id}"))
            .json(&json!({"title": title}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let done = Instant::now();
        // The writer reads its own write.
        let own: Value = http
            .get(format!("{a}/api/collections/items/records/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            own["title"],
            title.as_str(),
            "node A served a stale row after its own write"
        );
        loop {
            let v: Value = http
                .get(format!("{b}/api/collections/items/records/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if v["title"] == title.as_str() {
                break;
            }
            assert!(
                done.elapsed() < Duration::from_secs(5),
                "node B kept serving a stale row"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        stale.push(done.elapsed().as_secs_f64() * 1000.0);
    }

    // ---- 2. rolling restart under load through the balancer ----
    let stop = Arc::new(AtomicBool::new(false));
    let rt_seen = Arc::new(Mutex::new(Vec::new()));
    let rt_reconnects = Arc::new(AtomicU64::new(0));
    let rt_subscribed = Arc::new(AtomicU64::new(0));
    let rt = tokio::spawn(subscriber(
        lb.clone(),
        lb.clone(),
        "items/*".into(),
        rt_seen.clone(),
        stop.clone(),
        rt_reconnects.clone(),
        rt_subscribed.clone(),
    ));
    // Writes start once the client is subscribed, so every miss is a reconnect's.
    while rt_subscribed.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let load = Arc::new(Load {
        http: http.clone(),
        lb: lb.clone(),
        stop: stop.clone(),
        acked: Mutex::new(Vec::new()),
        requests: AtomicU64::new(0),
        failures: Mutex::new(Vec::new()),
    });
    let mut tasks = Vec::new();
    for w in 0..3 {
        tasks.push(tokio::spawn(writer(load.clone(), w)));
        tasks.push(tokio::spawn(reader(load.clone())));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rolled = Instant::now();
    for n in nodes.iter_mut().chain(std::iter::once(&mut worker)) {
        let status = n.stop();
        assert!(status.success(), "node exited with {status:?}");
        n.start(&db, &cfg);
        wait_ready(&n.url()).await;
        // Let the balancer see it up (rise 2 × 100 ms) before the next node goes.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let roll_secs = rolled.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let _ = rt.await;
    let acked: Vec<String> = load.acked.lock().unwrap().clone();
    let failures = load.failures.lock().unwrap().clone();
    let requests = load.requests.load(Ordering::Relaxed);

    // Every acknowledged write is stored.
    let (pc, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let stored: HashSet<String> = pc
        .query("SELECT id FROM items", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let lost_writes = acked.iter().filter(|id| !stored.contains(*id)).count();
    // Every stored record's event reached the NATS sink (delivered by the worker alone: the api
    // nodes run no sinks).
    let events = nats_creates(&stream, stored.len()).await;
    let lost_events = stored.iter().filter(|id| !events.contains(*id)).count();
    let rt_ids: HashSet<String> = rt_seen
        .lock()
        .unwrap()
        .iter()
        .map(|(i, _)| i.clone())
        .collect();
    let rt_missed = acked.iter().filter(|id| !rt_ids.contains(*id)).count();

    let rows = [
        (
            "cross-node realtime events (write on A, stream on B)",
            format!("{}/{}", got.len().min(sent.len()), sent.len()),
        ),
        (
            "cross-node event latency p50 / max (ms)",
            format!("{:.1} / {:.1}", pct(lat.clone(), 0.5), pct(lat, 1.0)),
        ),
        (
            "cache staleness on another node p50 / max (ms)",
            format!("{:.1} / {:.1}", pct(stale.clone(), 0.5), pct(stale, 1.0)),
        ),
        (
            "rolling restart of 3 api nodes and the worker (s)",
            format!("{roll_secs:.1}"),
        ),
        ("requests sent through the balancer", requests.to_string()),
        ("requests failed", failures.len().to_string()),
        ("writes acknowledged", acked.len().to_string()),
        ("acknowledged writes lost", lost_writes.to_string()),
        ("events lost (NATS sink)", lost_events.to_string()),
        (
            "realtime client through the balancer: reconnects / events missed while reconnecting",
            format!("{} / {rt_missed}", rt_reconnects.load(Ordering::Relaxed)),
        ),
    ];
    let mut report = String::from(
        "== cluster test (3 api nodes + 1 worker, PostgreSQL, Redis, HAProxy) ==\n| measure | value |\n|---|---:|\n",
    );
    for (k, v) in rows {
        report.push_str(&format!("| {k} | {v} |\n"));
    }
    println!("\n{report}");
    // Test output is captured by the harness; scripts/test.sh prints this file at the end.
    if let Ok(path) = std::env::var("BASALT_CLUSTER_REPORT") {
        std::fs::write(path, &report).unwrap();
    }
    let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap());
    let _ = js.delete_stream(&stream).await;
    assert!(
        failures.is_empty(),
        "failed requests: {:?}",
        &failures[..failures.len().min(20)]
    );
    assert!(acked.len() > 100, "too little load: {}", acked.len());
    assert_eq!(lost_writes, 0);
    assert_eq!(lost_events, 0);
}

/// Redis goes down under a node on PostgreSQL: reads (cached and not), writes and sign-ins keep
/// working from the database, health reports Redis down with its error, and once Redis is back the
/// node uses it again (health up, rows cached in Redis again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_degrades_to_the_database_and_recovers() {
    let port = free_port();
    let rdir = tmp();
    let start_redis = || {
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--dir", &rdir.0.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/services.sh installs it)")
    };
    let mut redis = start_redis();
    let rurl = format!("redis://127.0.0.1:{port}");
    let up = |u: String| async move {
        for _ in 0..100 {
            if std::net::TcpStream::connect(u.trim_start_matches("redis://")).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis did not start");
    };
    up(rurl.clone()).await;
    let db = Some(fresh_pg().await);
    let d = tmp();
    upsert(&d, &db);
    let (mut child, url) = serve_with(&d, &db, &["--redis-url".into(), rurl.clone()]).await;
    let http = reqwest::Client::new();
    let tok = su_token(&url).await;
    let r = http
        .post(format!("{url}/api/collections"))
        .header("Authorization", &tok)
        .json(&json!({"name": "notes", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
                      "fields": [{"name": "t", "type": "text"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let create = |t: &str| {
        http.post(format!("{url}/api/collections/notes/records"))
            .json(&json!({"t": t}))
            .send()
    };
    let first: Value = create("before").await.unwrap().json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_string();
    let get = || {
        http.get(format!("{url}/api/collections/notes/records/{id}"))
            .send()
    };
    assert_eq!(get().await.unwrap().status(), 200);
    let health = || async {
        let v: Value = http
            .get(format!("{url}/api/health"))
            .header("Authorization", &tok)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["data"]["cluster"]["redis"].clone()
    };
    assert_eq!(health().await["up"], true);

    // Redis dies.
    let _ = redis.kill();
    let _ = redis.wait();
    for i in 0..20 {
        let r = create(&format!("during {i}")).await.unwrap();
        assert_eq!(r.status(), 200, "a write failed while Redis was down");
        assert_eq!(
            get().await.unwrap().status(),
            200,
            "a read failed while Redis was down"
        );
    }
    // The writer still reads its own write (the cache level that is left is this node's).
    let r = http
        .patch(format!("{url}/api/collections/notes/records/{id}"))
        .json(&json!({"t": "changed while down"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = get().await.unwrap().json().await.unwrap();
    assert_eq!(v["t"], "changed while down");
    assert!(
        su_token(&url).await.len() > 20,
        "sign-in failed while Redis was down"
    );
    let h = health().await;
    assert_eq!(h["up"], false, "health does not report Redis down: {h}");
    assert!(h["lastError"].is_string(), "no error reported: {h}");

    // Redis returns: the node uses it again.
    let mut redis = start_redis();
    up(rurl.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while health().await["up"] != true {
        assert!(
            Instant::now() < deadline,
            "the node never saw Redis come back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh: Value = create("after").await.unwrap().json().await.unwrap();
    let fid = fresh["id"].as_str().unwrap();
    // A read fills Redis again (a fill racing the record's own create event is skipped, so read
    // until the key appears).
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = http
            .get(format!("{url}/api/collections/notes/records/{fid}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut c = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        c.write_all(format!("KEYS basalt:rec:{{*:{fid}}}:*\r\n").as_bytes())
            .unwrap();
        let mut buf = [0u8; 512];
        let n = c.read(&mut buf).unwrap();
        let reply = String::from_utf8_lossy(&buf[..n]).to_string();
        if reply.starts_with("*1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "row not cached in Redis after recovery: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = redis.kill();
    let _ = redis.wait();
    let _ = child.kill();
    let _ = child.wait();
}
