//! The typed settings tree: defaults < config file (TOML) < `BASALT_*` environment < CLI flags.
//! Unknown keys in the file are rejected; the database URL is a [`Secret`] and never printed.

use std::path::PathBuf;

use anyhow::Context;
use serde::Deserialize;

/// A value that never appears in logs or debug output.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Storage flags every subcommand takes.
#[derive(clap::Args, Debug, Clone)]
pub struct StorageArgs {
    /// Data directory (SQLite database and, later, local files).
    #[arg(long, env = "BASALT_DIR")]
    pub dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://user:pass@host:port/db). Without it Basalt uses SQLite in --dir.
    #[arg(long, env = "BASALT_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// A TOML settings file.
    #[arg(long, env = "BASALT_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    http: Option<String>,
    dir: Option<PathBuf>,
    database_url: Option<Secret>,
    target: Option<String>,
    log: Option<FileLog>,
    events: Option<basalt_events::EventsConfig>,
    realtime: Option<FileRealtime>,
    redis_url: Option<Secret>,
    advertise: Option<String>,
    cache: Option<basalt_service::cache::CacheConfig>,
    lifecycle: Option<FileLifecycle>,
    storage: Option<FileStorage>,
    egress: Option<basalt_events::egress::EgressConfig>,
    connections: Option<FileConnections>,
    metrics: Option<FileMetrics>,
    telemetry: Option<FileTelemetry>,
    pii: Option<FilePii>,
    graphql: Option<FileGraphql>,
}

/// `[graphql]`: the GraphQL endpoint (see `basalt_service::GraphqlOptions` for the defaults).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileGraphql {
    /// Serve `/api/graphql` at all.
    enabled: Option<bool>,
    /// The GraphiQL page for browsers at `GET /api/graphql`.
    graphiql: Option<bool>,
    /// Answer `__schema`/`__type` queries.
    introspection: Option<bool>,
    max_depth: Option<usize>,
    max_breadth: Option<usize>,
    max_cost: Option<u64>,
}

/// `[pii]`: the master key ring of PII protection (see `basalt_service::keyring`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FilePii {
    /// A TOML file: `primary = "<id>"` and a `[keys]` table of `<id> = "<base64 32 bytes>"`.
    /// `BASALT_PII_KEYS` (`id:base64,…`, the first primary) replaces it.
    keys_file: Option<PathBuf>,
    /// Superusers see pii values in clear only with an `X-Pii-Reason` header (else masks).
    require_reason: Option<bool>,
    /// While any collection has pii fields, requests from other hosts must arrive over HTTPS (through
    /// a trusted TLS-terminating proxy setting `X-Forwarded-Proto: https`).
    require_tls: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    primary: String,
    keys: std::collections::BTreeMap<String, String>,
}

fn load_pii_keys(
    env: Option<String>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<std::sync::Arc<basalt_service::keyring::KeyRing>>> {
    use basalt_service::keyring::KeyRing;
    let ring = match (env.filter(|e| !e.trim().is_empty()), file) {
        (Some(e), _) => {
            KeyRing::parse_env(&e).map_err(|m| anyhow::anyhow!("BASALT_PII_KEYS: {m}"))?
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("[pii] keys_file {}", path.display()))?;
            let kf: KeysFile = toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("[pii] keys_file {}: {e}", path.display()))?;
            let keys: Vec<(String, String)> = kf.keys.into_iter().collect();
            KeyRing::new(&keys, &kf.primary)
                .map_err(|m| anyhow::anyhow!("[pii] keys_file {}: {m}", path.display()))?
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(std::sync::Arc::new(ring)))
}

/// `[telemetry]`: OpenTelemetry traces over OTLP/HTTP (see `telemetry.rs`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileTelemetry {
    /// The collector's base URL (`http://collector:4318`); `OTEL_EXPORTER_OTLP_ENDPOINT`.
    endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME` (default `basalt`).
    service_name: Option<String>,
    /// Share of new traces sampled, 0 to 1 (`OTEL_TRACES_SAMPLER_ARG`, default 1).
    sample_ratio: Option<f64>,
}

/// Tracing, as configured by `[telemetry]` and the standard `OTEL_*` variables.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// From `[telemetry] endpoint`; `None` leaves it to `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`.
    pub endpoint: Option<String>,
    /// Whether an `OTEL_EXPORTER_OTLP_*ENDPOINT` variable is set.
    pub env_endpoint: bool,
    pub service_name: String,
    pub sample_ratio: f64,
}

impl TelemetrySettings {
    pub fn enabled(&self) -> bool {
        self.endpoint.is_some() || self.env_endpoint
    }
    pub fn endpoint_description(&self) -> String {
        self.endpoint.clone().unwrap_or_else(|| {
            std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT"))
                .unwrap_or_default()
        })
    }
}

/// `[metrics]`: who may read `/metrics`, and an optional listener of its own.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileMetrics {
    /// A bearer token every scrape must present (`BASALT_METRICS_TOKEN`).
    token: Option<Secret>,
    /// Peers that may scrape without a token (default: loopback on the main port, anyone on the
    /// metrics listener).
    allow: Option<Vec<String>>,
    /// An address serving only `/metrics` (`--metrics-http`, `BASALT_METRICS_HTTP`).
    http: Option<String>,
    /// `false` (or `BASALT_METRICS=off`): record no request, record-operation or store metrics
    /// (what `bench/run.sh` compares against to measure their cost).
    enabled: Option<bool>,
}

/// `[connections]`: bounds on slow and greedy clients (see `basalt_http::conn`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConnections {
    /// Seconds a request head (and an idle keep-alive connection) may take (default 20).
    header_timeout_secs: Option<u64>,
    /// Seconds before a body must keep up `body_min_rate` (default 10).
    body_grace_secs: Option<u64>,
    /// Bytes per second a body must average after the grace (default 1024).
    body_min_rate: Option<u64>,
    /// Open connections per client address, 0 for no cap (default 128).
    max_per_ip: Option<usize>,
    /// Peers not counted (default loopback: a local proxy or sidecar).
    unlimited: Option<Vec<String>>,
    /// MiB of request bodies all requests together may hold in memory (default 256).
    body_memory_mb: Option<usize>,
}

/// `[storage]`: how the embedded SQLite database commits.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    /// `full` (default: acknowledged after the fsync) or `normal` (after the WAL write).
    synchronous: Option<String>,
}

/// `[lifecycle]`: shutdown timings in milliseconds.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileLifecycle {
    drain_delay_ms: Option<u64>,
    deadline_ms: Option<u64>,
}

/// `[realtime]`: stream lifetimes in seconds (PocketBase: 300 idle, 1800 in all; keepalive is Basalt's).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileRealtime {
    idle_secs: Option<u64>,
    max_lifetime_secs: Option<u64>,
    keepalive_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileLog {
    level: Option<String>,
    format: Option<String>,
}

#[derive(Debug)]
pub struct LogSettings {
    pub level: String,
    pub format: String,
}

#[derive(Debug)]
pub struct Settings {
    pub http: String,
    pub dir: PathBuf,
    pub database_url: Option<Secret>,
    pub target: String,
    pub log: LogSettings,
    pub events: basalt_events::EventsConfig,
    pub realtime: basalt_service::realtime::RealtimeConfig,
    /// Redis (`--redis-url`, `BASALT_REDIS_URL`): shared cache, rate limits, cross-node messages.
    pub redis_url: Option<Secret>,
    /// The address this node is reached at, shown in the node registry (default: `http`).
    pub advertise: Option<String>,
    pub cache: basalt_service::cache::CacheConfig,
    pub lifecycle: basalt_service::cluster::Lifecycle,
    /// `[storage] synchronous` / `BASALT_SYNCHRONOUS` (SQLite only).
    pub synchronous: basalt_store::Synchronous,
    /// `[egress] allow` / `BASALT_EGRESS_ALLOW` (comma-separated): internal networks webhooks and
    /// OAuth2 may reach.
    pub egress: basalt_events::egress::EgressConfig,
    /// `[connections]`: timeouts, per-address cap, buffered-body memory.
    pub connections: basalt_http::conn::HttpLimits,
    /// `[metrics]`: access to `/metrics` on the main port.
    pub metrics: basalt_http::metrics::MetricsAccess,
    /// `[metrics] enabled` / `BASALT_METRICS`: whether metrics are recorded at all.
    pub metrics_enabled: bool,
    /// `[metrics] http` / `BASALT_METRICS_HTTP` / `--metrics-http`: a listener serving only
    /// `/metrics`.
    pub metrics_http: Option<String>,
    /// Access on that listener: the token, else `[metrics] allow`, else any peer.
    pub metrics_http_access: basalt_http::metrics::MetricsAccess,
    /// `[telemetry]`: traces over OTLP; `None` when `OTEL_SDK_DISABLED=true`.
    pub telemetry: Option<TelemetrySettings>,
    /// `[pii]` / `BASALT_PII_KEYS`: the master key ring (its `Debug` shows key ids only).
    pub pii_keys: Option<std::sync::Arc<basalt_service::keyring::KeyRing>>,
    pub pii_require_reason: bool,
    pub pii_require_tls: bool,
    /// `[graphql]`.
    pub graphql: basalt_service::GraphqlOptions,
    /// `--public-dir` (set by `serve`) and `--index-fallback`.
    pub public_dir: Option<PathBuf>,
    pub index_fallback: bool,
}

impl Settings {
    pub fn load(
        storage: &StorageArgs,
        http: Option<String>,
        target: Option<String>,
    ) -> anyhow::Result<Settings> {
        let file: FileSettings = match &storage.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
            }
            None => FileSettings::default(),
        };
        let flog = file.log.unwrap_or_default();
        let mut events = file.events.unwrap_or_default();
        // The env variables configure the first (or only) sink of each kind.
        fn first<T: Default>(v: &mut Vec<T>) -> &mut T {
            if v.is_empty() {
                v.push(T::default());
            }
            &mut v[0]
        }
        if let Ok(b) = std::env::var("BASALT_KAFKA_BROKERS") {
            let k = first(&mut events.kafka);
            k.brokers = b
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Ok(t) = std::env::var("BASALT_KAFKA_TOPIC") {
            first(&mut events.kafka).topic = t;
        }
        if let Ok(u) = std::env::var("BASALT_NATS_URL") {
            first(&mut events.nats).url = u;
        }
        if let Ok(u) = std::env::var("BASALT_RABBITMQ_URL") {
            first(&mut events.rabbitmq).url = u;
        }
        let fr = file.realtime.unwrap_or_default();
        let mut realtime = basalt_service::realtime::RealtimeConfig::default();
        let secs = std::time::Duration::from_secs;
        if let Some(v) = fr.idle_secs {
            realtime.idle = secs(v);
        }
        if let Some(v) = fr.max_lifetime_secs {
            realtime.max_lifetime = secs(v);
        }
        if let Some(v) = fr.keepalive_secs {
            realtime.keepalive = secs(v);
        }
        let mut cache = file.cache.unwrap_or_default();
        if let Ok(v) = std::env::var("BASALT_CACHE") {
            cache.enabled = match v.as_str() {
                "on" | "true" | "1" => true,
                "off" | "false" | "0" => false,
                other => anyhow::bail!("BASALT_CACHE must be on or off, not {other:?}"),
            };
        }
        let fl = file.lifecycle.unwrap_or_default();
        let mut lifecycle = basalt_service::cluster::Lifecycle::default();
        let ms = |env: &str, file: Option<u64>| -> anyhow::Result<Option<u64>> {
            match std::env::var(env) {
                Ok(v) => Ok(Some(
                    v.parse()
                        .with_context(|| format!("{env} must be milliseconds"))?,
                )),
                Err(_) => Ok(file),
            }
        };
        match ms("BASALT_DRAIN_DELAY_MS", fl.drain_delay_ms)? {
            Some(v) => lifecycle.drain_delay = std::time::Duration::from_millis(v),
            // One SQLite node has no load balancer to wait for: stop at once.
            None if storage.database_url.is_none() && file.database_url.is_none() => {
                lifecycle.drain_delay = std::time::Duration::ZERO
            }
            None => {}
        }
        if let Some(v) = ms("BASALT_SHUTDOWN_DEADLINE_MS", fl.deadline_ms)? {
            lifecycle.deadline = std::time::Duration::from_millis(v);
        }
        let sync_text = std::env::var("BASALT_SYNCHRONOUS")
            .ok()
            .or(file.storage.and_then(|s| s.synchronous));
        let synchronous = match sync_text {
            None => basalt_store::Synchronous::Full,
            Some(t) => basalt_store::Synchronous::parse(&t).ok_or_else(|| {
                anyhow::anyhow!("[storage] synchronous must be `full` or `normal`, not {t:?}")
            })?,
        };
        let mut egress = file.egress.unwrap_or_default();
        if let Ok(v) = std::env::var("BASALT_EGRESS_ALLOW") {
            egress.allow = v
                .split(',')
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect();
        }
        let fc = file.connections.unwrap_or_default();
        let mut connections = basalt_http::conn::HttpLimits::default();
        let secs = std::time::Duration::from_secs;
        if let Some(v) = fc.header_timeout_secs {
            anyhow::ensure!(v > 0, "[connections] header_timeout_secs must be positive");
            connections.header_timeout = secs(v);
        }
        if let Some(v) = fc.body_grace_secs {
            connections.body_grace = secs(v);
        }
        if let Some(v) = fc.body_min_rate {
            connections.body_min_rate = v.max(1);
        }
        if let Some(v) = fc.max_per_ip {
            connections.per_ip = v;
        }
        if let Some(list) = fc.unlimited {
            connections.unlimited = list
                .iter()
                .map(|n| {
                    basalt_core::net::Net::parse(n).ok_or_else(|| {
                        anyhow::anyhow!("[connections] unlimited: {n:?} is not a network")
                    })
                })
                .collect::<anyhow::Result<_>>()?;
        }
        if let Some(v) = fc.body_memory_mb {
            connections.body_memory = v.max(1) << 20;
        }
        let fm = file.metrics.unwrap_or_default();
        let metrics_enabled = match std::env::var("BASALT_METRICS").ok().as_deref() {
            Some("off" | "false" | "0") => false,
            Some("on" | "true" | "1") | None | Some("") => fm.enabled.unwrap_or(true),
            Some(v) => anyhow::bail!("BASALT_METRICS must be on or off, not {v:?}"),
        };
        let token = std::env::var("BASALT_METRICS_TOKEN")
            .ok()
            .map(Secret)
            .or(fm.token)
            .map(|t| t.0)
            .filter(|t| !t.is_empty());
        let allow = fm
            .allow
            .map(|list| {
                list.iter()
                    .map(|n| {
                        basalt_core::net::Net::parse(n).ok_or_else(|| {
                            anyhow::anyhow!("[metrics] allow: {n:?} is not a network")
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .transpose()?;
        let mut metrics = basalt_http::metrics::MetricsAccess {
            token: token.clone(),
            ..Default::default()
        };
        if let Some(a) = &allow {
            metrics.allow = a.clone();
        }
        let metrics_http = std::env::var("BASALT_METRICS_HTTP")
            .ok()
            .or(fm.http)
            .filter(|a| !a.is_empty());
        let everyone = ["0.0.0.0/0", "::/0"]
            .iter()
            .filter_map(|n| basalt_core::net::Net::parse(n))
            .collect();
        let metrics_http_access = basalt_http::metrics::MetricsAccess {
            token,
            allow: allow.unwrap_or(everyone),
            refuse_forwarded: false,
        };
        let ft = file.telemetry.unwrap_or_default();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let sample_ratio = match env("OTEL_TRACES_SAMPLER_ARG") {
            Some(v) => v.parse::<f64>().map_err(|_| {
                anyhow::anyhow!("OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1, not {v:?}")
            })?,
            None => ft.sample_ratio.unwrap_or(1.0),
        };
        anyhow::ensure!(
            (0.0..=1.0).contains(&sample_ratio),
            "[telemetry] sample_ratio must be from 0 to 1, not {sample_ratio}"
        );
        if let Some(e) = &ft.endpoint {
            anyhow::ensure!(
                e.starts_with("http://") || e.starts_with("https://"),
                "[telemetry] endpoint must be an http(s) URL, not {e:?}"
            );
        }
        let telemetry =
            (env("OTEL_SDK_DISABLED").as_deref() != Some("true")).then(|| TelemetrySettings {
                endpoint: ft.endpoint.filter(|e| !e.is_empty()),
                env_endpoint: env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                    || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some(),
                service_name: env("OTEL_SERVICE_NAME")
                    .or(ft.service_name)
                    .unwrap_or_else(|| "basalt".into()),
                sample_ratio,
            });
        let fp = file.pii.unwrap_or_default();
        let pii_keys = load_pii_keys(env("BASALT_PII_KEYS"), fp.keys_file.as_deref())?;
        let s = Settings {
            pii_keys,
            pii_require_reason: fp.require_reason.unwrap_or(false),
            pii_require_tls: fp.require_tls.unwrap_or(false),
            public_dir: None,
            index_fallback: true,
            graphql: {
                let g = file.graphql.unwrap_or_default();
                let d = basalt_service::GraphqlOptions::default();
                basalt_service::GraphqlOptions {
                    enabled: g.enabled.unwrap_or(d.enabled),
                    graphiql: g.graphiql.unwrap_or(d.graphiql),
                    introspection: g.introspection.unwrap_or(d.introspection),
                    max_depth: g.max_depth.unwrap_or(d.max_depth),
                    max_breadth: g.max_breadth.unwrap_or(d.max_breadth),
                    max_cost: g.max_cost.unwrap_or(d.max_cost),
                }
            },
            telemetry,
            metrics,
            metrics_enabled,
            metrics_http,
            metrics_http_access,
            connections,
            egress,
            synchronous,
            redis_url: std::env::var("BASALT_REDIS_URL")
                .ok()
                .map(Secret)
                .or(file.redis_url)
                .filter(|u| !u.expose().is_empty()),
            advertise: std::env::var("BASALT_ADVERTISE").ok().or(file.advertise),
            cache,
            lifecycle,
            http: http
                .or(file.http)
                .unwrap_or_else(|| "127.0.0.1:8090".into()),
            dir: storage
                .dir
                .clone()
                .or(file.dir)
                .unwrap_or_else(|| PathBuf::from("basalt_data")),
            database_url: storage
                .database_url
                .clone()
                .map(Secret)
                .or(file.database_url)
                .filter(|u| !u.expose().is_empty()),
            target: target.or(file.target).unwrap_or_else(|| "all".into()),
            log: LogSettings {
                level: std::env::var("BASALT_LOG")
                    .ok()
                    .or(flog.level)
                    .unwrap_or_else(|| "info".into()),
                format: std::env::var("BASALT_LOG_FORMAT")
                    .ok()
                    .or(flog.format)
                    .unwrap_or_else(|| "text".into()),
            },
            events,
            realtime,
        };
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if basalt_service::roles::Target::find(&self.target).is_none() {
            let names: Vec<&str> = basalt_service::roles::TARGETS
                .iter()
                .map(|t| t.name)
                .collect();
            anyhow::bail!(
                "unknown --target {:?}: this version runs {} (see --list-targets)",
                self.target,
                names.join(", ")
            );
        }
        for k in &self.events.kafka {
            if k.brokers.is_empty() || k.topic.is_empty() {
                anyhow::bail!("[events.kafka] needs at least one broker and a topic");
            }
        }
        for r in &self.events.rabbitmq {
            if r.url.is_empty() || r.exchange.is_empty() {
                anyhow::bail!("[events.rabbitmq] needs a url and an exchange");
            }
        }
        basalt_events::sinks::build(&self.events).map_err(|e| anyhow::anyhow!("[events] {e}"))?;
        for a in &self.egress.allow {
            if basalt_core::net::Net::parse(a).is_none() {
                anyhow::bail!(
                    "[egress] allow: {a:?} is not a network (10.0.0.0/8, 127.0.0.1, ::1)"
                );
            }
        }
        if self.realtime.idle.is_zero() || self.realtime.max_lifetime.is_zero() {
            anyhow::bail!("[realtime] idle_secs and max_lifetime_secs must be positive");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            anyhow::bail!(
                "log format must be `text` or `json`, not {:?}",
                self.log.format
            );
        }
        Ok(())
    }

    pub fn storage_description(&self) -> String {
        match &self.database_url {
            Some(u) => format!("postgres {}", basalt_store::redact(u.expose())),
            None => format!("sqlite {}", self.dir.join("data.db").display()),
        }
    }
}
