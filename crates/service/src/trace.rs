//! Trace context as the service sees it: the W3C `traceparent` of the current span (stamped on each
//! event, so sinks pass the trace on), and the request span's attributes an operation knows
//! (collection, caller kind). A leaf module. With no tracer installed the context is empty and
//! every function here is a no-op.

use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether an OpenTelemetry tracer is installed (set once by the binary at start): transports only
/// then read and continue incoming trace context.
pub fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

pub fn set_enabled() {
    ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
    set_request_spans();
}

static REQUEST_SPANS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether transports open a span per request (its fields: request id, method, path, route, status,
/// collection, caller, trace and span ids): with tracing on, or JSON logs (whose lines carry them).
/// Off, a request costs no span at all.
pub fn request_spans() -> bool {
    REQUEST_SPANS.load(std::sync::atomic::Ordering::Relaxed)
}

pub fn set_request_spans() {
    REQUEST_SPANS.store(true, std::sync::atomic::Ordering::Relaxed);
}

static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether log lines are JSON (they then carry the request span's fields).
pub fn json_logs() -> bool {
    JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed)
}

pub fn set_json_logs() {
    JSON_LOGS.store(true, std::sync::atomic::Ordering::Relaxed);
    set_request_spans();
}

/// Notes the caller's kind (`guest`, `user`, `superuser`) in the request's span (`basalt.caller`).
pub fn record_caller(kind: &str) {
    if request_spans() {
        tracing::Span::current().record("basalt.caller", kind);
    }
}

/// Spans the trace exporter dropped because its queue was full (the collector is slow or down).
pub static SPANS_DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Spans handed to the collector, and export attempts that failed.
pub static SPANS_EXPORTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static EXPORT_FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `00-<trace id>-<span id>-<flags>` of the current span, when it belongs to a valid trace.
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// Notes the collection an operation works on in the request's span (`basalt.collection`).
pub fn record_collection(name: &str) {
    if request_spans() {
        tracing::Span::current().record("basalt.collection", name);
    }
}
