//! Traces end to end: `basalt serve` exports spans over OTLP/HTTP to a receiver in the test (an HTTP
//! server decoding the OTLP protobuf with the official proto definitions, `opentelemetry-proto`); a
//! request sent with a chosen W3C `traceparent` continues that trace on the server, and the write's
//! webhook delivery and Kafka record carry it on. A collector that is down never slows requests:
//! spans are dropped and counted.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{json, Value};

use super::{free_port, metric_sum, metrics_text, storage_args, su_token, tmp, upsert, Proc, BIN};

#[derive(Default)]
struct Seen {
    /// (service name, span) of every exported span.
    spans: Vec<(String, Span)>,
    /// Headers and body of each webhook delivery.
    hooks: Vec<(HeaderMap, Value)>,
}

/// The OTLP receiver (`POST /v1/traces`) and a webhook target (`POST /hook`) on one port.
async fn receiver() -> (u16, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (s1, s2) = (seen.clone(), seen.clone());
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let seen = s1.clone();
                async move {
                    assert_eq!(headers["content-type"], "application/x-protobuf");
                    let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                    let mut g = seen.lock().unwrap();
                    for rs in req.resource_spans {
                        let service = rs
                            .resource
                            .iter()
                            .flat_map(|r| r.attributes.iter())
                            .find(|a| a.key == "service.name")
                            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                                AnyValue::StringValue(s) => Some(s.clone()),
                                _ => None,
                            })
                            .unwrap_or_default();
                        for ss in rs.scope_spans {
                            for sp in ss.spans {
                                g.spans.push((service.clone(), sp));
                            }
                        }
                    }
                    // An empty ExportTraceServiceResponse.
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        )
        .route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let seen = s2.clone();
                async move {
                    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                    seen.lock().unwrap().hooks.push((headers, v));
                    "ok"
                }
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (port, seen)
}

fn attr(sp: &Span, key: &str) -> Option<String> {
    sp.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            AnyValue::IntValue(i) => Some(i.to_string()),
            AnyValue::BoolValue(b) => Some(b.to_string()),
            AnyValue::DoubleValue(d) => Some(d.to_string()),
            _ => None,
        }
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

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

async fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "port {port} did not open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_basalt(
    d: &super::Dir,
    cfg: &std::path::Path,
    env: &[(&str, String)],
    log: &std::path::Path,
) -> (Proc, String) {
    let port = free_port();
    let mut c = Command::new(BIN);
    c.args(["serve", "--http", &format!("127.0.0.1:{port}")])
        .args(storage_args(d, &None))
        .args(["--config", &cfg.display().to_string()])
        .env("BASALT_EGRESS_ALLOW", "127.0.0.1")
        .env("BASALT_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        c.env(k, v);
    }
    let child = Proc(c.spawn().unwrap());
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{url}/api/health"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "server did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_trace_continues_through_the_server_and_every_sink() {
    let d = tmp();
    upsert(&d, &None);
    let (rport, seen) = receiver().await;
    // A private Kafka-protocol broker (tansu).
    let kport = free_port();
    let kdir = d.0.join("kafka");
    std::fs::create_dir_all(&kdir).unwrap();
    let kurl = format!("tcp://127.0.0.1:{kport}");
    let _broker = Proc(
        Command::new(tansu_bin())
            .current_dir(&kdir)
            .args([
                "broker",
                "--listener-url",
                &kurl,
                "--advertised-listener-url",
                &kurl,
                "--storage-engine",
                "sqlite://tansu.db",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(kport).await;
    let cfg = d.0.join("basalt.toml");
    let tag = basalt_core::id::random_id(8);
    let (stream, queue) = (format!("TRACED_{tag}"), format!("traced_{tag}"));
    std::fs::write(
        &cfg,
        format!(
            "[events.kafka]\nbrokers = [\"127.0.0.1:{kport}\"]\ntopic = \"traced\"\npartitions = 1\n\
             [events.nats]\nurl = \"{}\"\nstream = \"{stream}\"\nsubject_prefix = \"traced{tag}\"\n\
             [events.rabbitmq]\nexchange = \"{queue}\"\nqueue = \"{queue}\"\n",
            super::nats_url()
        ),
    )
    .unwrap();
    let log = d.0.join("server.log");
    let (_basalt, url) = start_basalt(
        &d,
        &cfg,
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{rport}"),
            ),
            ("OTEL_SERVICE_NAME", "basalt-under-test".into()),
            // The "request served" line is at debug.
            ("BASALT_LOG", "info,basalt_http=debug".into()),
        ],
        &log,
    )
    .await;
    let c = reqwest::Client::new();
    let su = su_token(&url).await;
    let r = c
        .post(format!("{url}/api/collections"))
        .header("authorization", &su)
        .json(
            &json!({"name": "notes", "createRule": "", "fields": [{"name": "t", "type": "text"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{url}/api/webhooks"))
        .header("authorization", &su)
        .json(&json!({"url": format!("http://127.0.0.1:{rport}/hook"), "secret": "a-secret-of-some-length", "collection": "notes", "events": ["create"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // The client's trace: trace id T, its span P.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let r = c
        .post(format!("{url}/api/collections/notes/records"))
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .json(&json!({"t": "traced write"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The server span continues the client's trace, named by the route template.
    let deadline = Instant::now() + Duration::from_secs(20);
    let server = loop {
        let found = seen
            .lock()
            .unwrap()
            .spans
            .iter()
            .find(|(_, s)| {
                hex(&s.trace_id) == trace_id
                    && attr(s, "http.route").as_deref() == Some("/api/collections/{c}/records")
            })
            .cloned();
        if let Some(s) = found {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no server span of the trace arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (service, sp) = server;
    assert_eq!(service, "basalt-under-test");
    assert_eq!(
        hex(&sp.parent_span_id),
        parent,
        "the client's span is the parent"
    );
    assert_eq!(sp.name, "POST /api/collections/{c}/records");
    assert_eq!(sp.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(
        attr(&sp, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(attr(&sp, "basalt.collection").as_deref(), Some("notes"));
    let server_span = hex(&sp.span_id);
    // Store statements are spans of the same trace, by shape only (no values).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let db: Vec<Span> = seen
            .lock()
            .unwrap()
            .spans
            .iter()
            .filter(|(_, s)| hex(&s.trace_id) == trace_id && s.name.starts_with("db."))
            .map(|(_, s)| s.clone())
            .collect();
        if let Some(insert) = db
            .iter()
            .find(|s| attr(s, "db.statement").is_some_and(|t| t.contains("INSERT INTO \"notes\"")))
        {
            let text = attr(insert, "db.statement").unwrap();
            assert!(
                !text.contains("traced write"),
                "statements carry no values: {text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no store span of the trace: {:?}",
            db.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The webhook delivery and the Kafka record carry the trace on.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (headers, body) = loop {
        if let Some(h) = seen.lock().unwrap().hooks.first().cloned() {
            break h;
        }
        assert!(Instant::now() < deadline, "no webhook delivery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let tp = headers["traceparent"].to_str().unwrap().to_string();
    assert!(tp.starts_with(&format!("00-{trace_id}-")), "{tp}");
    assert!(tp.ends_with("-01"), "sampled: {tp}");
    assert_eq!(
        body["traceparent"], tp,
        "the CloudEvent's distributed-tracing extension"
    );
    assert_ne!(
        tp,
        format!("00-{trace_id}-{parent}-01"),
        "the server's own span is the parent now"
    );

    use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
    let client = rskafka::client::ClientBuilder::new(vec![format!("127.0.0.1:{kport}")])
        .build()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let record = loop {
        if let Ok(pc) = client
            .partition_client("traced".to_string(), 0, UnknownTopicHandling::Retry)
            .await
        {
            if let Ok(hi) = pc.get_offset(OffsetAt::Latest).await {
                if hi > 0 {
                    let (recs, _) = pc.fetch_records(0, 1..1_000_000, 1_000).await.unwrap();
                    if let Some(r) = recs.into_iter().next() {
                        break r.record;
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "no Kafka record");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ktp = String::from_utf8(record.headers["traceparent"].clone()).unwrap();
    assert_eq!(ktp, tp, "the Kafka record's header");
    let v: Value = serde_json::from_slice(record.value.as_ref().unwrap()).unwrap();
    assert_eq!(v["traceparent"], tp);

    // NATS JetStream and RabbitMQ messages carry it as a header.
    {
        use futures_util::StreamExt;
        let js = async_nats::jetstream::new(async_nats::connect(super::nats_url()).await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        let header = loop {
            if let Ok(st) = js.get_stream(&stream).await {
                let c = st
                    .create_consumer(async_nats::jetstream::consumer::pull::Config {
                        ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                let mut msgs = c
                    .fetch()
                    .max_messages(10)
                    .expires(Duration::from_secs(1))
                    .messages()
                    .await
                    .unwrap();
                if let Some(Ok(m)) = msgs.next().await {
                    break m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("traceparent"))
                        .map(|v| v.as_str().to_string());
                }
            }
            assert!(Instant::now() < deadline, "no NATS message");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(
            header.as_deref(),
            Some(tp.as_str()),
            "the NATS message's header"
        );
        let _ = js.delete_stream(&stream).await;
    }
    {
        use lapin::options::{BasicGetOptions, QueueDeleteOptions};
        let conn = lapin::Connection::connect(
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            lapin::ConnectionProperties::default()
                .with_executor(tokio_executor_trait::Tokio::current())
                .with_reactor(tokio_reactor_trait::Tokio),
        )
        .await
        .expect("RabbitMQ must run on 127.0.0.1:5672 (guest/guest)");
        let ch = conn.create_channel().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let header = loop {
            if let Ok(Some(m)) = ch.basic_get(&queue, BasicGetOptions { no_ack: true }).await {
                let h = m.delivery.properties.headers().clone().unwrap_or_default();
                break h.inner().get("traceparent").and_then(|v| match v {
                    lapin::types::AMQPValue::LongString(s) => Some(s.to_string()),
                    _ => None,
                });
            }
            assert!(Instant::now() < deadline, "no RabbitMQ message");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(
            header.as_deref(),
            Some(tp.as_str()),
            "the RabbitMQ message's header"
        );
        let _ = ch.queue_delete(&queue, QueueDeleteOptions::default()).await;
        let _ = ch.exchange_delete(&queue, Default::default()).await;
    }

    // JSON log lines of the request carry its trace and span ids.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| v["span"]["trace_id"] == trace_id
                && v["span"]["span_id"] == server_span.as_str()),
        "no log line with the trace id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_dropped_spans_not_requests() {
    let d = tmp();
    upsert(&d, &None);
    let cfg = d.0.join("basalt.toml");
    // A port nobody listens on.
    let dead = free_port();
    std::fs::write(
        &cfg,
        format!("[telemetry]\nendpoint = \"http://127.0.0.1:{dead}\"\nsample_ratio = 1.0\n"),
    )
    .unwrap();
    let log = d.0.join("server.log");
    let (_basalt, url) = start_basalt(&d, &cfg, &[], &log).await;
    let c = reqwest::Client::new();
    let began = Instant::now();
    for _ in 0..50 {
        let r = c
            .get(format!("{url}/api/collections/users/records"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Not a timing assertion of speed: a request must not wait for the collector's timeout (10 s).
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "requests waited on the collector"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = metrics_text(&url).await;
        let dropped = metric_sum(&text, "basalt_trace_spans_total{outcome=\"dropped\"}");
        let failures = metric_sum(&text, "basalt_trace_export_failures_total");
        if dropped >= 50.0 && failures >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dropped spans not counted: {dropped} dropped, {failures} failures"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
