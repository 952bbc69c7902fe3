//! Observability as an operator sees it: a real Prometheus (Debian's `prometheus`) scrapes a running
//! `basalt serve` through its metrics listener with a bearer token, and its query API answers with
//! the request and outbox series; JSON logs carry the request id.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    free_port, metric_sum, metrics_text, serve_with, storage_args, su_token, tmp, upsert, Proc, BIN,
};

fn prometheus_bin() -> String {
    std::env::var("BASALT_PROMETHEUS").unwrap_or_else(|_| "prometheus".into())
}

async fn query(prom: &str, q: &str) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await;
    let Ok(r) = r else { return vec![] };
    let v: Value = r.json().await.unwrap_or_default();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_running_basalt() {
    let d = tmp();
    upsert(&d, &None);
    let mport = free_port();
    let cfg = d.0.join("basalt.toml");
    std::fs::write(&cfg, "[metrics]\ntoken = \"scrape-secret\"\n").unwrap();
    let (child, url) = serve_with(
        &d,
        &None,
        &[
            "--config".into(),
            cfg.display().to_string(),
            "--metrics-http".into(),
            format!("127.0.0.1:{mport}"),
        ],
    )
    .await;
    let _basalt = Proc(child);
    let murl = format!("http://127.0.0.1:{mport}/metrics");
    // The metrics listener wants the token.
    let c = reqwest::Client::new();
    assert_eq!(c.get(&murl).send().await.unwrap().status(), 401);
    assert_eq!(
        c.get(&murl)
            .bearer_auth("scrape-secret")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Traffic: a collection, records, reads.
    let su = su_token(&url).await;
    let r = c
        .post(format!("{url}/api/collections"))
        .header("authorization", &su)
        .json(&serde_json::json!({"name": "notes", "listRule": "", "viewRule": "", "fields": [{"name": "t", "type": "text"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for i in 0..5 {
        let r = c
            .post(format!("{url}/api/collections/notes/records"))
            .header("authorization", &su)
            .json(&serde_json::json!({"t": format!("n{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    for _ in 0..7 {
        let r = c
            .get(format!("{url}/api/collections/notes/records"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    let pdir = d.0.join("prom");
    std::fs::create_dir_all(&pdir).unwrap();
    let pcfg = pdir.join("prometheus.yml");
    std::fs::write(
        &pcfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: basalt\n    \
             authorization:\n      credentials: scrape-secret\n    static_configs:\n      - targets: ['127.0.0.1:{mport}']\n"
        ),
    )
    .unwrap();
    let pport = free_port();
    let prom = Command::new(prometheus_bin())
        .arg(format!("--config.file={}", pcfg.display()))
        .arg(format!("--storage.tsdb.path={}", pdir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{pport}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start prometheus ({e}): install Debian's `prometheus` (scripts/services.sh does)")
        });
    let _prom = Proc(prom);
    let purl = format!("http://127.0.0.1:{pport}");

    // Prometheus scrapes every second; wait for the series to arrive.
    let q = r#"sum(http_server_request_duration_seconds_count{job="basalt",http_request_method="GET",http_route="/api/collections/{c}/records",http_response_status_code="200"})"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = vec![];
    while Instant::now() < deadline {
        got = query(&purl, q).await;
        if got.first().is_some_and(|s| value(s) >= 7.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(got.len(), 1, "no series for the list route: {got:?}");
    assert_eq!(value(&got[0]), 7.0);
    let up = query(&purl, r#"up{job="basalt"}"#).await;
    assert_eq!(up.first().map(value), Some(1.0), "{up:?}");
    let creates = query(
        &purl,
        r#"basalt_record_operations_total{collection="notes",action="create",outcome="ok"}"#,
    )
    .await;
    assert_eq!(creates.first().map(value), Some(5.0), "{creates:?}");
    // The outbox lag of the webhooks sink is there (0 once delivered), and the outbox saw the writes.
    let mut lag = vec![];
    for _ in 0..50 {
        lag = query(&purl, r#"basalt_sink_lag_events{sink="webhooks"}"#).await;
        if !lag.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        lag.len(),
        1,
        "{:?}",
        query(&purl, r#"{__name__=~"basalt_(sink|outbox).*"}"#).await
    );
    assert!(value(&lag[0]) >= 0.0);
    let hwm = query(&purl, "basalt_outbox_high_water").await;
    assert!(hwm.first().map(value).unwrap_or(0.0) >= 5.0, "{hwm:?}");
    // A latency quantile computes from the histogram buckets.
    let p99 = query(
        &purl,
        r#"histogram_quantile(0.99, sum by (le) (http_server_request_duration_seconds_bucket{http_route="/api/collections/{c}/records"}))"#,
    )
    .await;
    assert!(
        p99.first().map(value).is_some_and(|v| v > 0.0 && v <= 10.0),
        "{p99:?}"
    );
}

/// With `[log] format = "json"`, every line logged while serving a request carries its request id
/// (the client's `X-Request-Id`), in the request's span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id() {
    let d = tmp();
    upsert(&d, &None);
    let port = free_port();
    let log = d.0.join("server.log");
    let child = Command::new(BIN)
        .args(["serve", "--http", &format!("127.0.0.1:{port}")])
        .args(storage_args(&d, &None))
        .env("BASALT_LOG", "info,basalt_http=debug")
        .env("BASALT_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _basalt = Proc(child);
    let url = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if c.get(format!("{url}/api/health")).send().await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = c
        .get(format!("{url}/api/collections/users/records"))
        .header("x-request-id", "req-7f3a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-7f3a");
    let mut line = None;
    for _ in 0..50 {
        let text = std::fs::read_to_string(&log).unwrap();
        line = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["span"]["request_id"] == "req-7f3a");
        if line.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = line.expect("a JSON log line with the request id");
    assert_eq!(line["fields"]["message"], "request served");
    assert_eq!(line["fields"]["status"], 200);
    assert_eq!(line["span"]["path"], "/api/collections/users/records");
}

/// `[metrics] enabled = false` records nothing on the request path: after traffic, `/metrics` still
/// answers (scrape-time series) but holds no request or record-operation sample, where a server with
/// the defaults counts them. A `BASALT_METRICS` that is neither on nor off refuses to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_turned_off() {
    let c = reqwest::Client::new();
    let mut counts = Vec::new();
    for enabled in [false, true] {
        let d = tmp();
        upsert(&d, &None);
        let cfg = d.0.join("basalt.toml");
        std::fs::write(&cfg, format!("[metrics]\nenabled = {enabled}\n")).unwrap();
        let (child, url) =
            serve_with(&d, &None, &["--config".into(), cfg.display().to_string()]).await;
        let _basalt = Proc(child);
        let su = su_token(&url).await;
        for _ in 0..3 {
            let r = c
                .get(format!("{url}/api/collections/users/records"))
                .header("authorization", &su)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let text = metrics_text(&url).await;
        assert!(text.contains("basalt_build_info"), "{text}");
        counts.push((
            metric_sum(&text, "http_server_request_duration_seconds_count"),
            metric_sum(&text, "basalt_record_operations_total"),
            metric_sum(&text, "basalt_store_query_duration_seconds_count"),
        ));
    }
    assert_eq!(counts[0], (0.0, 0.0, 0.0), "metrics off: nothing recorded");
    assert!(
        counts[1].0 >= 4.0 && counts[1].1 >= 3.0 && counts[1].2 > 0.0,
        "metrics on: {:?}",
        counts[1]
    );
    let d = tmp();
    let out = Command::new(BIN)
        .env("BASALT_METRICS", "sometimes")
        .args(["serve", "--http", &format!("127.0.0.1:{}", free_port())])
        .args(storage_args(&d, &None))
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("BASALT_METRICS must be on or off"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
