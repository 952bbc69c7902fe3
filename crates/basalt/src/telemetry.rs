//! Logging and tracing: the `tracing` subscriber (text or JSON lines on stderr) and, when an OTLP
//! endpoint is configured, an OpenTelemetry layer exporting spans over OTLP/HTTP (protobuf).
//!
//! - **Config:** `[telemetry] endpoint` (the collector's base URL; `/v1/traces` is appended), or the
//!   standard `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`;
//!   `service_name` / `OTEL_SERVICE_NAME` (default `basalt`); `sample_ratio` /
//!   `OTEL_TRACES_SAMPLER_ARG` (default 1.0), parent-based: a client's sampled `traceparent` is
//!   always continued. `OTEL_SDK_DISABLED=true` turns tracing off.
//! - **Export never blocks a request:** ended spans go into a bounded queue ([`QUEUE`]); a full queue
//!   drops the span and counts it (`basalt_trace_spans_total{outcome="dropped"}`). One task sends
//!   batches to the collector with the async HTTP client Basalt already uses (reqwest), each with a
//!   deadline; a collector that is down costs failed exports, counted, nothing more.
//! - **What is traced:** the `info` spans of every crate (a span per request: route, status,
//!   collection, caller kind) and Basalt's `debug` spans (store statements by shape, never values;
//!   rule compilation; sink deliveries).

use std::sync::atomic::Ordering;
use std::time::Duration;

use basalt_service::trace::{EXPORT_FAILURES, SPANS_DROPPED, SPANS_EXPORTED};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _, SpanProcessor};
use tokio::sync::mpsc;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::{Settings, TelemetrySettings};

/// Spans waiting for export at most.
pub const QUEUE: usize = 4096;
/// Spans per export request at most.
const BATCH: usize = 512;
/// How long spans wait for more to fill a batch.
const LINGER: Duration = Duration::from_millis(500);
/// Deadline of one export request.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Installs the global subscriber. Returns the tracer provider when tracing is on (kept alive by
/// the caller; dropping it stops export).
pub fn init(s: &Settings) -> anyhow::Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    let filter = EnvFilter::try_new(&s.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if s.log.format == "json" {
        // JSON lines carry their spans' fields (request id, trace and span ids).
        basalt_service::trace::set_json_logs();
        fmt.json().with_filter(filter).boxed()
    } else {
        // Text lines do not show spans: the text layer never sees them, so a traced request's spans
        // cost no formatting here.
        use tracing_subscriber::filter::FilterExt;
        let events = tracing_subscriber::filter::filter_fn(|m| !m.is_span());
        fmt.with_ansi(false).with_filter(filter.and(events)).boxed()
    };
    let registry = tracing_subscriber::registry().with(fmt);
    let Some(t) = s.telemetry.as_ref().filter(|t| t.enabled()) else {
        registry.init();
        return Ok(None);
    };
    let provider = provider(t)?;
    let tracer = provider.tracer("basalt");
    let otel_filter = EnvFilter::new(
        "info,basalt_store=debug,basalt_service=debug,basalt_events=debug,basalt_http=debug,basalt=debug",
    );
    registry
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(otel_filter),
        )
        .init();
    basalt_service::trace::set_enabled();
    tracing::info!(endpoint = %t.endpoint_description(), sample_ratio = t.sample_ratio, "tracing to OTLP");
    Ok(Some(provider))
}

fn provider(t: &TelemetrySettings) -> anyhow::Result<opentelemetry_sdk::trace::SdkTracerProvider> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let mut b = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(Client(reqwest::Client::new()))
        .with_timeout(EXPORT_TIMEOUT);
    if let Some(e) = &t.endpoint {
        b = b.with_endpoint(format!("{}/v1/traces", e.trim_end_matches('/')));
    }
    let mut exporter = b.build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(t.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    exporter.set_resource(&resource);
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(export_loop(exporter, rx));
    let sampler = opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
        opentelemetry_sdk::trace::Sampler::TraceIdRatioBased(t.sample_ratio),
    ));
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_resource(resource)
        .with_span_processor(Queue(tx))
        .build())
}

/// Hands ended spans to the export task without waiting.
#[derive(Debug)]
struct Queue(mpsc::Sender<SpanData>);

impl SpanProcessor for Queue {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
    fn on_end(&self, span: SpanData) {
        if self.0.try_send(span).is_err() {
            SPANS_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

async fn export_loop(exporter: opentelemetry_otlp::SpanExporter, mut rx: mpsc::Receiver<SpanData>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        // A batch not full yet may fill for a moment (without a wake per span); under load full
        // batches go out back to back.
        if batch.len() < BATCH {
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(s) => batch.push(s),
                    Err(_) => break,
                }
            }
        }
        let n = batch.len() as u64;
        match exporter.export(std::mem::take(&mut batch)).await {
            Ok(()) => {
                SPANS_EXPORTED.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                EXPORT_FAILURES.fetch_add(1, Ordering::Relaxed);
                SPANS_DROPPED.fetch_add(n, Ordering::Relaxed);
                tracing::debug!(error = %e, spans = n, "OTLP export failed");
            }
        }
    }
}

/// The OTLP exporter's HTTP client: the reqwest client the rest of Basalt uses.
#[derive(Debug)]
struct Client(reqwest::Client);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Client {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<bytes::Bytes>,
    ) -> Result<opentelemetry_http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let mut rb = self
            .0
            .request(parts.method, parts.uri.to_string())
            .timeout(EXPORT_TIMEOUT)
            .body(body);
        for (k, v) in &parts.headers {
            rb = rb.header(k, v);
        }
        let res = rb.send().await?;
        let mut out = opentelemetry_http::Response::builder().status(res.status());
        for (k, v) in res.headers() {
            out = out.header(k, v);
        }
        Ok(out.body(res.bytes().await?)?)
    }
}
