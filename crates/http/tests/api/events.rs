//! Events: the transactional outbox and its sinks, against real targets — a webhook receiver served by
//! the test, a private NATS JetStream server and a private Kafka-protocol broker (tansu) that the
//! tests stop and restart mid-stream. Each outage test writes a stream of creates/updates/deletes,
//! takes the target down for a while, brings it back, and then checks that every event arrived, that
//! one record's events arrived in commit order, and that any duplicate carries the same event id.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basalt_events::config::{KafkaConfig, NatsConfig};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Backend, TempDir, TestApp};

fn opts() -> basalt_http::Options {
    let mut o = basalt_http::Options::default();
    o.events.poll_ms = 100;
    o.events.prune_ms = 200;
    o.events.retry_min_ms = 50;
    o.events.retry_max_ms = 500;
    o.events.webhooks.backoff_min_ms = 50;
    o.events.webhooks.backoff_max_ms = 400;
    o.events.webhooks.max_attempts = 1000;
    o.events.webhooks.timeout_ms = 2000;
    o
}

/// What the writer did: per record, the actions in commit order.
type Expected = BTreeMap<String, Vec<String>>;

/// A target a test can take down and bring back.
trait Target {
    fn stop(&mut self);
    fn start(&mut self);
}

/// Writes `n` records (create, update, update; every third one deleted). The target goes down before
/// record `n/3` and comes back (after 500 ms more) before record `2n/3`. Every write must succeed while
/// the target is down.
/// `seen`: the sink whose health must show a failed delivery before the target comes back (so the
/// outage is seen whatever the machine's load did to the timing).
async fn write_stream(
    app: &TestApp,
    coll: &str,
    n: usize,
    target: &mut dyn Target,
    outage_ms: u64,
    seen: Option<&str>,
) -> Expected {
    let mut exp = Expected::new();
    for i in 0..n {
        if i == n / 3 {
            target.stop();
        }
        if i == 2 * n / 3 {
            tokio::time::sleep(Duration::from_millis(outage_ms)).await;
            if let Some(name) = seen {
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while sink_failures(app, name).await == 0 {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{name} never failed while its target was down"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            target.start();
        }
        let r = app
            .record(coll, json!({"title": format!("t{i}"), "n": i}))
            .await;
        let id = r["id"].as_str().unwrap().to_string();
        let mut acts = vec!["create".to_string()];
        for k in 1..=2 {
            let u = app
                .patch(
                    &format!("/api/collections/{coll}/records/{id}"),
                    app.su(),
                    json!({"n": i * 10 + k}),
                )
                .await;
            assert_eq!(u.0, 200, "update while a sink is down: {}", u.1);
            acts.push("update".into());
        }
        if i % 3 == 0 {
            let d = app
                .delete(&format!("/api/collections/{coll}/records/{id}"), app.su())
                .await;
            assert_eq!(d.0, 204, "delete while a sink is down: {}", d.1);
            acts.push("delete".into());
        }
        exp.insert(id, acts);
    }
    exp
}

/// Checks received CloudEvents against what was written: all there, per-record order, duplicates
/// only with the same id. Returns the number of duplicates seen.
fn check_delivery(exp: &Expected, received: &[Value]) -> usize {
    let mut seen: HashMap<String, Value> = HashMap::new();
    let mut per_record: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut dups = 0;
    for ev in received {
        let id = ev["id"].as_str().unwrap().to_string();
        if let Some(prev) = seen.get(&id) {
            assert_eq!(prev, ev, "a duplicate must be the same event");
            dups += 1;
            continue;
        }
        seen.insert(id.clone(), ev.clone());
        let subject = ev["subject"].as_str().unwrap();
        let rid = subject.rsplit('/').next().unwrap().to_string();
        let action = ev["data"]["action"].as_str().unwrap().to_string();
        per_record.entry(rid).or_default().push((action, id));
    }
    for (rid, acts) in exp {
        let got: Vec<String> = per_record
            .get(rid)
            .map(|v| v.iter().map(|(a, _)| a.clone()).collect())
            .unwrap_or_default();
        assert_eq!(
            &got, acts,
            "events of record {rid} (missing or out of order)"
        );
    }
    assert_eq!(
        per_record.len(),
        exp.len(),
        "events for records nobody wrote"
    );
    dups
}

async fn items(app: &TestApp) -> String {
    let name = format!("items_{}", basalt_core::id::random_id(6));
    app.collection(json!({"name": name, "listRule": "", "viewRule": "", "fields": [
        {"name": "title", "type": "text"}, {"name": "n", "type": "number"}, {"name": "secret", "type": "text", "hidden": true}
    ]}))
    .await;
    name
}

async fn wait_until<F: FnMut() -> bool>(what: &str, secs: u64, mut f: F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sink_failures(app: &TestApp, name: &str) -> u64 {
    let h = app.get("/api/health", app.su()).await;
    h.1["data"]["events"]["sinks"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .and_then(|s| s["failures"].as_u64())
        .unwrap_or(0)
}

/// The sink's health shows it failed during the outage and has caught up since.
async fn sink_saw_outage(app: &TestApp, name: &str) {
    let h = app.get("/api/health", app.su()).await;
    let sinks = h.1["data"]["events"]["sinks"].as_array().unwrap().clone();
    let s = sinks.iter().find(|s| s["name"] == name).unwrap();
    assert!(
        s["failures"].as_u64().unwrap() > 0,
        "the outage was seen: {s}"
    );
    assert_eq!(s["lag"], 0, "{s}");
    assert_eq!(s["healthy"], true, "{s}");
}

// ---------------------------------------------------------------- webhooks

#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<(HashMap<String, String>, String)>>,
    /// While set, the target answers 500 (used for dead letters).
    fail: AtomicBool,
    /// While set, the target is down: its listener is gone and live connections get 503.
    down: AtomicBool,
    port: AtomicU16,
}

fn serve_receiver(r: Arc<Receiver>) -> tokio::task::JoinHandle<()> {
    use axum::routing::post;
    let port = r.port.load(Ordering::SeqCst);
    let std_listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
    r.port
        .store(listener.local_addr().unwrap().port(), Ordering::SeqCst);
    let rr = r.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let r = rr.clone();
            async move {
                if r.down.load(Ordering::SeqCst) {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                if r.fail.load(Ordering::SeqCst) {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                let h = headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                r.got.lock().unwrap().push((h, body));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

const SECRET: &str = "whsec-test-0123456789";

fn verify_signature(headers: &HashMap<String, String>, body: &str) {
    use hmac::{Hmac, Mac};
    let sig = &headers["x-basalt-signature"];
    let (t, v1) = sig.split_once(',').unwrap();
    let ts: i64 = t.strip_prefix("t=").unwrap().parse().unwrap();
    assert!(
        (chrono::Utc::now().timestamp() - ts).abs() < 300,
        "timestamp inside the replay window"
    );
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1.strip_prefix("v1=").unwrap(), hex, "signature");
    assert_eq!(headers["x-basalt-timestamp"], ts.to_string());
}

async fn webhook_outage(backend: Backend) {
    let app = spawn_app_with(backend, opts()).await;
    let coll = items(&app).await;
    let rx = Arc::new(Receiver::default());
    let server = serve_receiver(rx.clone());
    let port = rx.port.load(Ordering::SeqCst);
    let w = app
        .post("/api/webhooks", app.su(), json!({"url": format!("http://127.0.0.1:{port}/hook"), "secret": SECRET, "collection": coll, "events": ["create", "update", "delete"]}))
        .await;
    assert_eq!(w.0, 200, "{}", w.1);
    assert!(w.1.get("secret").is_none(), "the secret is write-only");

    struct Hook(Arc<Receiver>, tokio::task::JoinHandle<()>);
    impl Target for Hook {
        fn stop(&mut self) {
            self.0.down.store(true, Ordering::SeqCst);
            self.1.abort();
        }
        fn start(&mut self) {
            self.0.down.store(false, Ordering::SeqCst);
            self.1 = serve_receiver(self.0.clone());
        }
    }
    let mut hook = Hook(rx.clone(), server);
    let exp = write_stream(&app, &coll, 24, &mut hook, 500, None).await;
    let total: usize = exp.values().map(Vec::len).sum();
    wait_until("every webhook delivery", 60, || {
        let got = rx.got.lock().unwrap();
        let ids: std::collections::HashSet<String> = got
            .iter()
            .map(|(h, _)| h["x-basalt-event-id"].clone())
            .collect();
        ids.len() >= total
    })
    .await;
    let got = rx.got.lock().unwrap().clone();
    let events: Vec<Value> = got
        .iter()
        .map(|(h, b)| {
            verify_signature(h, b);
            assert_eq!(h["content-type"], "application/cloudevents+json");
            let v: Value = serde_json::from_str(b).unwrap();
            assert_eq!(h["x-basalt-event-id"], v["id"].as_str().unwrap());
            v
        })
        .collect();
    check_delivery(&exp, &events);
    // CloudEvents shape: record after, record before on updates and deletes, hidden fields kept for
    // sinks, secrets never.
    let upd = events
        .iter()
        .find(|e| e["type"] == "basalt.record.updated")
        .unwrap();
    assert_eq!(upd["specversion"], "1.0");
    assert_eq!(upd["source"], "/basalt");
    assert!(upd["subject"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{coll}/")));
    assert!(upd["data"]["record"]["n"].is_number());
    assert!(upd["data"]["before"]["n"].is_number());
    assert!(upd["data"]["record"].get("secret").is_some());
    let del = events
        .iter()
        .find(|e| e["type"] == "basalt.record.deleted")
        .unwrap();
    assert!(del["data"]["record"].is_null());
    assert!(del["data"]["before"]["id"].is_string());
    // Nothing left queued; health shows the sink caught up.
    let h = app.get("/api/health", app.su()).await;
    let sinks = h.1["data"]["events"]["sinks"].as_array().unwrap().clone();
    let wh = sinks.iter().find(|s| s["name"] == "webhooks").unwrap();
    assert_eq!(wh["lag"], 0, "{h:?}");
    let failed = h.1["data"]["events"]["webhooks"]["failedAttempts"]
        .as_u64()
        .unwrap();
    assert!(failed > 0, "the outage was seen by the worker: {h:?}");
    let pending = app
        .get("/api/webhooks/deliveries?status=pending", app.su())
        .await;
    assert_eq!(pending.1["totalItems"], 0, "{:?}", pending.1);
    // Once every sink has acknowledged (and saved its cursor), the outbox is pruned.
    let store = app.ctx.store.clone();
    let mut left = -1;
    for _ in 0..100 {
        left = basalt_events::outbox::count(store.as_ref()).await.unwrap();
        // The newest row always stays (SQLite must never reuse its sequence number).
        if left <= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(left <= 1, "acknowledged events are pruned: {left} left");
    // Health is for superusers only.
    let guest = app.get("/api/health", None).await;
    assert!(guest.1["data"].get("events").is_none());
}

async fn webhook_dead_letters(backend: Backend) {
    let app = spawn_app_with(backend, opts()).await;
    let coll = items(&app).await;
    let rx = Arc::new(Receiver::default());
    rx.fail.store(true, Ordering::SeqCst);
    let _server = serve_receiver(rx.clone());
    let port = rx.port.load(Ordering::SeqCst);
    let url = format!("http://127.0.0.1:{port}/hook");
    // Validation: each bad field is named; only superusers manage webhooks.
    let bad = app
        .post("/api/webhooks", app.su(), json!({"url": "ftp://x", "secret": "short", "collection": "nope", "events": ["created"]}))
        .await;
    assert_eq!(bad.0, 400);
    for f in ["url", "secret", "collection", "events"] {
        assert!(bad.1["data"][f]["code"].is_string(), "{f}: {}", bad.1);
    }
    let (_, user) = app.user("hooks@example.com").await;
    assert_eq!(
        app.post("/api/webhooks", Some(&user), json!({})).await.0,
        403
    );
    assert_eq!(app.get("/api/webhooks", None).await.0, 401);

    let w = app
        .post("/api/webhooks", app.su(), json!({"url": url, "secret": SECRET, "collection": "*", "events": ["create"], "maxAttempts": 2}))
        .await;
    assert_eq!(w.0, 200, "{}", w.1);
    let wid = w.1["id"].as_str().unwrap().to_string();
    let rec = app.record(&coll, json!({"title": "x"})).await;
    let mut dead = Value::Null;
    for _ in 0..200 {
        let d = app
            .get(&format!("/api/webhooks/deliveries?webhook={wid}"), app.su())
            .await;
        if d.1["totalItems"] == 1 {
            dead = d.1["items"][0].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        dead["status"], "dead",
        "the delivery reached the dead-letter list"
    );
    assert_eq!(dead["attempts"], 2);
    assert_eq!(dead["lastError"], "target answered 500");
    assert_eq!(dead["event"]["data"]["record"]["id"], rec["id"]);
    // Replay once the target is healthy again: delivered, and the dead-letter list is empty.
    rx.fail.store(false, Ordering::SeqCst);
    let r = app
        .post(
            &format!(
                "/api/webhooks/deliveries/{}/replay",
                dead["id"].as_str().unwrap()
            ),
            app.su(),
            json!({}),
        )
        .await;
    assert_eq!(r.0, 204, "{}", r.1);
    wait_until("the replayed delivery", 20, || {
        rx.got.lock().unwrap().len() == 1
    })
    .await;
    let d = app.get("/api/webhooks/deliveries", app.su()).await;
    assert_eq!(d.1["totalItems"], 0);
    assert_eq!(
        app.post("/api/webhooks/deliveries/nope/replay", app.su(), json!({}))
            .await
            .0,
        404
    );
    // Update and delete the webhook.
    let u = app
        .patch(
            &format!("/api/webhooks/{wid}"),
            app.su(),
            json!({"active": false}),
        )
        .await;
    assert_eq!(u.1["active"], false);
    assert_eq!(
        app.delete(&format!("/api/webhooks/{wid}"), app.su())
            .await
            .0,
        204
    );
    assert_eq!(
        app.get(&format!("/api/webhooks/{wid}"), app.su()).await.0,
        404
    );
}

// ---------------------------------------------------------------- NATS JetStream

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A broker process the test owns: started on a port, killed (`stop`) and started again (`start`) on
/// the same port and data, as an outage would.
struct Server {
    name: &'static str,
    port: u16,
    command: Box<dyn Fn() -> std::process::Command>,
    child: Option<std::process::Child>,
}

impl Server {
    fn start(
        name: &'static str,
        port: u16,
        command: impl Fn() -> std::process::Command + 'static,
    ) -> Server {
        let mut s = Server {
            name,
            port,
            command: Box::new(command),
            child: None,
        };
        Target::start(&mut s);
        s
    }
}

impl Target for Server {
    fn start(&mut self) {
        let child = (self.command)()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} did not start", self.name);
    }
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every message a JetStream stream holds now (up to `max`), read by a fresh unacknowledged consumer.
pub(crate) async fn stream_messages(
    js: &async_nats::jetstream::Context,
    stream: &str,
    max: usize,
) -> Vec<async_nats::jetstream::Message> {
    use futures_util::StreamExt;
    let consumer = js
        .get_stream(stream)
        .await
        .unwrap()
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = consumer
        .fetch()
        .max_messages(max)
        .expires(Duration::from_secs(3))
        .messages()
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(m) = msgs.next().await {
        out.push(m.unwrap());
    }
    out
}

async fn nats_outage(backend: Backend) {
    let dir = TempDir(
        std::env::temp_dir().join(format!("basalt-nats-{}", basalt_core::id::random_id(8))),
    );
    let port = free_port();
    let store = dir.0.clone();
    // nats-server from Debian's package (scripts/services.sh installs it).
    let mut nats = Server::start("nats-server", port, move || {
        let mut c = std::process::Command::new("nats-server");
        c.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store);
        c
    });
    let mut o = opts();
    o.events.nats = vec![NatsConfig {
        name: String::new(),
        url: format!("nats://127.0.0.1:{port}"),
        stream: "BASALT_TEST".into(),
        subject_prefix: "bt".into(),
        duplicate_window_secs: 120,
        ack_timeout_ms: 1000,
        ..Default::default()
    }];
    let app = spawn_app_with(backend, o).await;
    let coll = items(&app).await;
    let exp = write_stream(&app, &coll, 24, &mut nats, 2500, Some("nats")).await;
    let total: usize = exp.values().map(Vec::len).sum();
    let client = async_nats::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let mut n = 0;
    for _ in 0..600 {
        if let Ok(mut s) = js.get_stream("BASALT_TEST").await {
            n = s.info().await.map(|i| i.state.messages).unwrap_or(0);
            if n as usize >= total {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        n as usize >= total,
        "only {n} of {total} events reached JetStream"
    );
    let mut events = Vec::new();
    for m in stream_messages(&js, "BASALT_TEST", n as usize).await {
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        let h = m.headers.as_ref().unwrap();
        assert_eq!(
            h.get("Nats-Msg-Id").unwrap().as_str(),
            v["id"].as_str().unwrap()
        );
        let action = v["data"]["action"].as_str().unwrap();
        assert_eq!(m.subject.as_str(), format!("bt.{coll}.{action}"));
        events.push(v);
    }
    check_delivery(&exp, &events);
    sink_saw_outage(&app, "nats").await;
}

// ---------------------------------------------------------------- Kafka (tansu)

fn tansu_bin() -> std::path::PathBuf {
    let p = std::env::var("BASALT_TANSU")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap())
                .join(".cache/basalt/tools/bin/tansu")
        });
    assert!(
        p.exists(),
        "tansu not found at {}: run scripts/tansu.sh install",
        p.display()
    );
    p
}

async fn kafka_outage(backend: Backend) {
    use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
    let dir = TempDir(
        std::env::temp_dir().join(format!("basalt-kafka-{}", basalt_core::id::random_id(8))),
    );
    std::fs::create_dir_all(&dir.0).unwrap();
    let port = free_port();
    // tansu resolves `sqlite://FILE` against its working directory.
    let data = dir.0.clone();
    let bin = tansu_bin();
    let mut broker = Server::start("tansu", port, move || {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut c = std::process::Command::new(&bin);
        c.current_dir(&data).args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "sqlite://tansu.db",
        ]);
        c
    });
    let topic = "basalt.test".to_string();
    let mut o = opts();
    o.events.kafka = vec![KafkaConfig {
        name: String::new(),
        brokers: vec![format!("127.0.0.1:{port}")],
        topic: topic.clone(),
        topic_per_collection: false,
        partitions: 3,
        replication_factor: 1,
        retry_deadline_ms: 1000,
        ..Default::default()
    }];
    let app = spawn_app_with(backend, o).await;
    let coll = items(&app).await;
    let exp = write_stream(&app, &coll, 24, &mut broker, 2500, Some("kafka")).await;
    let total: usize = exp.values().map(Vec::len).sum();
    let client = rskafka::client::ClientBuilder::new(vec![format!("127.0.0.1:{port}")])
        .build()
        .await
        .unwrap();
    // Read every partition until all events are there; one record's events share a partition.
    let mut events: Vec<Value> = Vec::new();
    let mut partitions: HashMap<String, i32> = HashMap::new();
    for _ in 0..300 {
        events.clear();
        partitions.clear();
        for p in 0..3 {
            let Ok(pc) = client
                .partition_client(topic.clone(), p, UnknownTopicHandling::Retry)
                .await
            else {
                continue;
            };
            let Ok(hi) = pc.get_offset(OffsetAt::Latest).await else {
                continue;
            };
            let mut off = 0;
            while off < hi {
                let (recs, _) = pc.fetch_records(off, 1..1_000_000, 1_000).await.unwrap();
                if recs.is_empty() {
                    break;
                }
                for r in recs {
                    off = r.offset + 1;
                    let v: Value =
                        serde_json::from_slice(r.record.value.as_ref().unwrap()).unwrap();
                    let key = String::from_utf8(r.record.key.clone().unwrap()).unwrap();
                    assert!(
                        v["subject"].as_str().unwrap().ends_with(&key),
                        "key = record id"
                    );
                    if let Some(prev) = partitions.insert(key.clone(), p) {
                        assert_eq!(prev, p, "one record's events stay in one partition");
                    }
                    events.push(v);
                }
            }
        }
        let ids: std::collections::HashSet<&str> =
            events.iter().map(|e| e["id"].as_str().unwrap()).collect();
        if ids.len() >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    check_delivery(&exp, &events);
    sink_saw_outage(&app, "kafka").await;
}

// ---------------------------------------------------------------- RabbitMQ

/// A TCP proxy in front of the machine's RabbitMQ: `stop` closes its listener and cuts every open
/// connection (what the sink sees when the broker goes away), `start` listens again on the same port.
/// The shared broker itself is never stopped, so other users of it are not disturbed.
struct Proxy {
    port: u16,
    upstream: String,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    fn new(upstream: &str) -> Proxy {
        let mut p = Proxy {
            port: free_port(),
            upstream: upstream.into(),
            tasks: Arc::default(),
        };
        Target::start(&mut p);
        p
    }
}

impl Target for Proxy {
    fn start(&mut self) {
        let mut bound = None;
        for _ in 0..100 {
            match std::net::TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => {
                    bound = Some(l);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let l = bound.expect("rebinding the proxy port");
        l.set_nonblocking(true).unwrap();
        let l = tokio::net::TcpListener::from_std(l).unwrap();
        let upstream = self.upstream.clone();
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = l.accept().await {
                let upstream = upstream.clone();
                let t = tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                tasks.lock().unwrap().push(t);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }
    fn stop(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rabbitmq_addr() -> String {
    std::env::var("BASALT_TEST_RABBITMQ").unwrap_or_else(|_| "127.0.0.1:5672".into())
}

async fn rabbitmq_outage(backend: Backend) {
    use basalt_events::config::RabbitMqConfig;
    use lapin::options::{BasicGetOptions, QueueDeleteOptions};
    let mut proxy = Proxy::new(&rabbitmq_addr());
    let tag = basalt_core::id::random_id(8);
    let queue = format!("basalt_test_{tag}");
    let exchange = format!("basalt_test_{tag}");
    let mut o = opts();
    o.events.rabbitmq = vec![RabbitMqConfig {
        url: format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port),
        exchange: exchange.clone(),
        queue: queue.clone(),
        confirm_timeout_ms: 1000,
        ..Default::default()
    }];
    let app = spawn_app_with(backend, o).await;
    let coll = items(&app).await;
    let exp = write_stream(&app, &coll, 24, &mut proxy, 2500, Some("rabbitmq")).await;
    let total: usize = exp.values().map(Vec::len).sum();
    // Read everything back straight from the broker.
    let conn = lapin::Connection::connect(
        &format!("amqp://guest:guest@{}/%2f", rabbitmq_addr()),
        lapin::ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio),
    )
    .await
    .expect("RabbitMQ must run on 127.0.0.1:5672 (guest/guest): apt-get install rabbitmq-server");
    let ch = conn.create_channel().await.unwrap();
    let mut events = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match ch
            .basic_get(&queue, BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(m) => {
                let v: Value = serde_json::from_slice(&m.delivery.data).unwrap();
                let props = &m.delivery.properties;
                assert_eq!(
                    props.message_id().as_ref().map(|s| s.as_str()),
                    v["id"].as_str(),
                    "message_id is the event id"
                );
                assert_eq!(props.delivery_mode(), &Some(2), "persistent");
                let action = v["data"]["action"].as_str().unwrap();
                assert_eq!(m.delivery.routing_key.as_str(), format!("{coll}.{action}"));
                events.push(v);
            }
            None => {
                let distinct: std::collections::HashSet<&str> =
                    events.iter().filter_map(|v| v["id"].as_str()).collect();
                if distinct.len() >= total {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "only {} of {total} events reached RabbitMQ",
                    distinct.len()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    check_delivery(&exp, &events);
    // The last batch can be in the queue before its confirmations reached the sink: wait for the
    // sink to count it delivered.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let h = app.get("/api/health", app.su()).await.1;
        let lag = h["data"]["events"]["sinks"]
            .as_array()
            .and_then(|l| l.iter().find(|s| s["name"] == "rabbitmq"))
            .map(|s| s["lag"].clone());
        if lag == Some(json!(0)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sink did not catch up: {h}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sink_saw_outage(&app, "rabbitmq").await;
    let _ = ch.queue_delete(&queue, QueueDeleteOptions::default()).await;
    let _ = ch.exchange_delete(&exchange, Default::default()).await;
}

crate::both_backends!(
    webhook_outage,
    webhook_dead_letters,
    nats_outage,
    kafka_outage,
    rabbitmq_outage
);
