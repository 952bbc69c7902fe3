//! The `basalt` binary: CLI, typed settings (file < `BASALT_*` env < flags), roles, graceful shutdown.
//!
//! Layout: [`settings`] holds the typed settings tree; `main` parses the CLI, builds the app through
//! `basalt_http::build` and serves it until SIGTERM/SIGINT.

mod settings;
mod telemetry;

/// mimalloc: the request path allocates many small JSON maps and strings; glibc malloc took ~35% of
/// a list request's CPU in `perf` (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Parser, Subcommand};
use settings::{Settings, StorageArgs};

#[derive(Parser, Debug)]
#[command(
    name = "basalt",
    version,
    about = "Basalt: a backend in one binary, speaking PocketBase's HTTP protocol."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Starts the server.
    Serve {
        #[command(flatten)]
        storage: StorageArgs,
        /// Address to listen on.
        #[arg(long, env = "BASALT_HTTP")]
        http: Option<String>,
        /// Role to run: all (default), api or worker (see --list-targets).
        #[arg(long, env = "BASALT_TARGET")]
        target: Option<String>,
        /// Lists the roles and what each runs, then exits.
        #[arg(long)]
        list_targets: bool,
        /// Redis URL (redis://host:port/db), or several comma-separated Redis Cluster seed URLs:
        /// shared cache, cluster-wide rate limits and cross-node messages.
        #[arg(long, env = "BASALT_REDIS_URL", hide_env_values = true)]
        redis_url: Option<String>,
        /// The address this node is reached at, shown in the node registry (default: --http).
        #[arg(long, env = "BASALT_ADVERTISE")]
        advertise: Option<String>,
        /// Serve /metrics alone on this address too (e.g. 0.0.0.0:9091), for scrapers on an
        /// internal network; `[metrics]` in the config sets a token or an allow-list.
        #[arg(long)]
        metrics_http: Option<String>,
        /// Static files served at / (default: pb_public beside the data directory, as PocketBase).
        #[arg(long, env = "BASALT_PUBLIC_DIR")]
        public_dir: Option<std::path::PathBuf>,
        /// A path with no file answers the public folder's index.html (single-page apps).
        #[arg(long, env = "BASALT_INDEX_FALLBACK", default_value_t = true, action = clap::ArgAction::Set)]
        index_fallback: bool,
    },
    /// PII protection: key rotation, erasure, new keys.
    Pii {
        #[command(subcommand)]
        action: PiiCmd,
    },
    /// Manages superusers.
    Superuser {
        #[command(subcommand)]
        action: SuperuserCmd,
    },
    /// Brings data in from another system.
    Import {
        #[command(subcommand)]
        from: ImportCmd,
    },
    /// The collections as code: export, diff against a file, apply a file.
    Schema {
        #[command(subcommand)]
        action: SchemaCmd,
    },
    /// Describes the API of the collections: TypeScript types for the pocketbase SDK, or OpenAPI.
    Typegen {
        #[command(subcommand)]
        lang: TypegenCmd,
    },
}

#[derive(Subcommand, Debug)]
enum TypegenCmd {
    /// TypeScript types: `new PocketBase(url) as TypedPocketBase` types `pb.collection('posts')`.
    Ts {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// The OpenAPI 3.1 document `GET /api/openapi.json` serves.
    Openapi {
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Subcommand, Debug)]
enum ImportCmd {
    /// A PocketBase (0.23+) data directory: collections, records, users with their passwords,
    /// tokens, settings and files, into --dir (SQLite) or --database-url.
    Pocketbase {
        /// PocketBase's pb_data directory.
        pb_data: std::path::PathBuf,
        /// Import into a target that already holds collections or users.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Subcommand, Debug)]
enum SchemaCmd {
    /// Prints every collection as JSON (secrets left out): the file `diff` and `apply` read.
    Export {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Prints what applying FILE would change, calling out the changes that drop stored values.
    Diff {
        file: std::path::PathBuf,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Makes the collections match FILE in one transaction (collections not in it are deleted,
    /// system ones kept); nothing changes when any step fails.
    Apply {
        file: std::path::PathBuf,
        /// Checks every change and rolls them back.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Subcommand, Debug)]
enum SuperuserCmd {
    /// Creates a superuser, or updates the password of an existing one.
    Upsert {
        email: String,
        password: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Creates a new superuser (fails when the email is taken).
    Create {
        email: String,
        password: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Changes the password of an existing superuser (its tokens stop working).
    Update {
        email: String,
        password: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Deletes a superuser (never the last one).
    Delete {
        email: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Creates an OTP for a superuser (the _superusers collection must allow OTP sign-in) and prints
    /// its id and code.
    Otp {
        email: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Sets the IPs and subnets superusers may sign in from (none: clears the restriction).
    Ips {
        ips: Vec<String>,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Subcommand, Debug)]
enum PiiCmd {
    /// Rewraps every record's data key under the primary key of the ring (BASALT_PII_KEYS or
    /// [pii] keys_file) and re-keys the blind indexes, with progress; safe while servers run.
    Rotate {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Crypto-shreds one subject's pii: deletes the record's data key (every copy of its pii,
    /// including backups restored later, becomes unreadable).
    Erase {
        collection: String,
        id: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Prints a new random 32-byte key, base64, for the key ring.
    Keygen,
}

/// The import's progress on stderr: on a terminal, one bar per step redrawn in place
/// (`posts  [########------------]  4000/10000`); otherwise a line per update.
fn import_progress(p: basalt_service::pbimport::Progress<'_>, tty: bool) {
    let (done, total) = (p.done, p.total.max(p.done));
    if !tty {
        eprintln!("import: {}: {done}/{total}", p.what);
        return;
    }
    const WIDTH: u64 = 24;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let bar: String = (0..WIDTH)
        .map(|i| if i < filled { '#' } else { '-' })
        .collect();
    let end = if done >= total { "\n" } else { "" };
    eprint!("\r{:<28} [{bar}] {done:>9}/{total}{end}", p.what);
}

/// A service error as the CLI prints it: a validation failure with each field's message.
fn cli_error(e: basalt_service::ServiceError) -> anyhow::Error {
    match &e.0 {
        basalt_core::Error::Validation { message, fields } => anyhow::anyhow!(
            "{message} {}",
            fields
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => anyhow::anyhow!("{other}"),
    }
}

/// `basalt import pocketbase`.
async fn import_pocketbase(
    pb_data: &std::path::Path,
    force: bool,
    storage: &StorageArgs,
) -> anyhow::Result<()> {
    let s = Settings::load(storage, None, None)?;
    telemetry::init(&s)?;
    let ctx = open_app(&s, false).await?;
    if !force
        && !basalt_service::pbimport::target_is_empty(&ctx)
            .await
            .map_err(cli_error)?
    {
        anyhow::bail!(
            "the target ({}) already holds collections or users: import into an empty one, or pass --force",
            s.storage_description()
        );
    }
    let began = std::time::Instant::now();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = |p: basalt_service::pbimport::Progress<'_>| import_progress(p, tty);
    let r = basalt_service::pbimport::import(&ctx, pb_data, &progress)
        .await
        .map_err(cli_error)?;
    println!(
        "Imported {} in {:.1} s:",
        pb_data.display(),
        began.elapsed().as_secs_f64()
    );
    println!("{:<32} {:>10} {:>10}", "collection", "pocketbase", "basalt");
    let mut ok = true;
    for (name, src, dst) in &r.collections {
        let mark = if src == dst { "" } else { "  MISMATCH" };
        ok &= src == dst;
        println!("{name:<32} {src:>10} {dst:>10}{mark}");
    }
    for (name, src, dst) in &r.files_by {
        let mark = if src == dst { "" } else { "  MISMATCH" };
        println!(
            "{:<32} {src:>10} {dst:>10}{mark}",
            format!("files of {name}")
        );
    }
    println!("{:<32} {:>10} {:>10}", "files", r.files.0, r.files.1);
    println!("{:<32} {:>10} {:>10}", "request logs", r.logs.0, r.logs.1);
    println!(
        "settings: {}",
        if r.settings {
            "imported"
        } else {
            "none (or encrypted)"
        }
    );
    if !ok || r.files.0 != r.files.1 || r.logs.0 != r.logs.1 {
        anyhow::bail!("the counts differ (above)");
    }
    Ok(())
}

/// `basalt schema export|diff|apply`.
async fn typegen(lang: TypegenCmd) -> anyhow::Result<()> {
    use basalt_service::apidoc;
    let (TypegenCmd::Ts { storage } | TypegenCmd::Openapi { storage }) = &lang;
    let s = Settings::load(storage, None, None)?;
    telemetry::init(&s)?;
    let ctx = open_app(&s, false).await?;
    let colls = ctx.collections();
    match lang {
        TypegenCmd::Ts { .. } => print!("{}", apidoc::typescript(&colls.list)),
        TypegenCmd::Openapi { .. } => println!(
            "{}",
            serde_json::to_string_pretty(&apidoc::openapi(&colls.list))?
        ),
    }
    Ok(())
}

async fn schema(action: SchemaCmd) -> anyhow::Result<()> {
    use basalt_service::schemadiff;
    let storage = match &action {
        SchemaCmd::Export { storage }
        | SchemaCmd::Diff { storage, .. }
        | SchemaCmd::Apply { storage, .. } => storage,
    };
    let s = Settings::load(storage, None, None)?;
    telemetry::init(&s)?;
    let ctx = open_app(&s, false).await?;
    let read = |p: &std::path::Path| -> anyhow::Result<serde_json::Value> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))?;
        if schemadiff::collections_of(&doc).is_empty() {
            anyhow::bail!(
                "{} holds no collections (an array of collections, as `basalt schema export` prints)",
                p.display()
            );
        }
        Ok(doc)
    };
    let print_diff = |changes: &[schemadiff::Change]| {
        if changes.is_empty() {
            println!("No changes.");
        }
        for c in changes {
            println!("{c}");
        }
        let lost = changes.iter().filter(|c| c.loses_data).count();
        if lost > 0 {
            println!("{lost} change(s) drop stored values.");
        }
    };
    match &action {
        SchemaCmd::Export { .. } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&schemadiff::export(&ctx))?
            );
        }
        SchemaCmd::Diff { file, .. } => {
            let doc = read(file)?;
            print_diff(&schemadiff::diff(&ctx, &doc).await.map_err(cli_error)?);
        }
        SchemaCmd::Apply { file, dry_run, .. } => {
            let doc = read(file)?;
            let changes = schemadiff::diff(&ctx, &doc).await.map_err(cli_error)?;
            print_diff(&changes);
            let body = serde_json::json!({
                "collections": schemadiff::collections_of(&doc),
                "deleteMissing": true,
            });
            basalt_service::collections::import_with(&ctx, &body, *dry_run)
                .await
                .map_err(cli_error)?;
            if *dry_run {
                println!("Dry run: every change checked, none applied.");
            } else if !changes.is_empty() {
                println!("Applied.");
            }
        }
    }
    Ok(())
}

/// `basalt superuser …`, with PocketBase's words.
async fn superuser(action: SuperuserCmd) -> anyhow::Result<()> {
    use basalt_service::bootstrap::{delete_superuser, save_superuser, Save};
    let storage = match &action {
        SuperuserCmd::Upsert { storage, .. }
        | SuperuserCmd::Create { storage, .. }
        | SuperuserCmd::Update { storage, .. }
        | SuperuserCmd::Delete { storage, .. }
        | SuperuserCmd::Otp { storage, .. }
        | SuperuserCmd::Ips { storage, .. } => storage,
    };
    let s = Settings::load(storage, None, None)?;
    telemetry::init(&s)?;
    let ctx = open_app(&s, false).await?;
    match &action {
        SuperuserCmd::Upsert {
            email, password, ..
        } => {
            save_superuser(&ctx, email, password, Save::Upsert)
                .await
                .map_err(cli_error)?;
            println!("Successfully saved superuser \"{email}\"!");
        }
        SuperuserCmd::Create {
            email, password, ..
        } => {
            save_superuser(&ctx, email, password, Save::Create)
                .await
                .map_err(cli_error)?;
            println!("Successfully created new superuser \"{email}\"!");
        }
        SuperuserCmd::Update {
            email, password, ..
        } => {
            save_superuser(&ctx, email, password, Save::Update)
                .await
                .map_err(cli_error)?;
            println!("Successfully changed superuser \"{email}\" password!");
        }
        SuperuserCmd::Delete { email, .. } => {
            if delete_superuser(&ctx, email).await.map_err(cli_error)? {
                println!("Successfully deleted superuser \"{email}\"!");
            } else {
                println!("superuser \"{email}\" is missing or already deleted");
            }
        }
        SuperuserCmd::Otp { email, .. } => {
            let (id, code) = basalt_service::auth::mfa::issue_otp(&ctx, "_superusers", email)
                .await
                .map_err(cli_error)?;
            println!("Successfully created OTP for superuser \"{email}\":");
            println!("├─ Id:    {id}");
            println!("├─ Pass:  {code}");
            println!("└─ Valid: the _superusers collection's otp.duration");
        }
        SuperuserCmd::Ips { ips, .. } => {
            basalt_service::settings::patch(&ctx, &serde_json::json!({"superuserIPs": ips}))
                .await
                .map_err(cli_error)?;
            if ips.is_empty() {
                println!("Successfully cleared SuperuserIPs setting!");
            } else {
                println!("Successfully updated SuperuserIPs setting:");
                for (i, ip) in ips.iter().enumerate() {
                    println!(
                        "{} {ip}",
                        if i + 1 == ips.len() {
                            "└─"
                        } else {
                            "├─"
                        }
                    );
                }
            }
        }
    }
    Ok(())
}

/// Opens the database and builds the app; `serving` also starts the configured event sinks.
async fn open_app(s: &Settings, serving: bool) -> anyhow::Result<basalt_http::AppCtx> {
    basalt_store::metrics::set_enabled(s.metrics_enabled);
    let store = basalt_store::open_with(
        &s.dir,
        s.database_url.as_ref().map(|u| u.expose()),
        s.synchronous,
    )
    .await
    .with_context(|| format!("opening the database ({})", s.storage_description()))?;
    let opts = if serving {
        basalt_http::Options {
            events: s.events.clone(),
            realtime: s.realtime.clone(),
            mailbox: Some(s.dir.join("mailbox")),
            data_dir: Some(s.dir.clone()),
            cluster: basalt_service::cluster::ClusterOptions {
                join: true,
                redis_url: s.redis_url.as_ref().map(|u| u.expose().to_string()),
                database_url: s.database_url.as_ref().map(|u| u.expose().to_string()),
                address: s.advertise.clone().unwrap_or_else(|| s.http.clone()),
                role: s.target.clone(),
                cache: s.cache.clone(),
            },
            target: basalt_service::roles::Target::find(&s.target),
            egress: s.egress.clone(),
            commit: env!("BASALT_COMMIT"),
            pii_keys: s.pii_keys.clone(),
            pii_require_reason: s.pii_require_reason,
            pii_require_tls: s.pii_require_tls,
            graphql: s.graphql.clone(),
            public_dir: s.public_dir.clone(),
            index_fallback: s.index_fallback,
        }
    } else {
        basalt_http::Options {
            data_dir: Some(s.dir.clone()),
            pii_keys: s.pii_keys.clone(),
            ..Default::default()
        }
    };
    basalt_http::build_with(store, opts)
        .await
        .map_err(|e| anyhow::anyhow!("starting: {}", e.0))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received, draining in-flight requests");
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            storage,
            http,
            target,
            list_targets,
            redis_url,
            advertise,
            metrics_http,
            public_dir,
            index_fallback,
        } => {
            if list_targets {
                print!("{}", basalt_service::roles::Target::table());
                return Ok(());
            }
            let mut s = Settings::load(&storage, http, target)?;
            if let Some(u) = redis_url.filter(|u| !u.is_empty()) {
                s.redis_url = Some(settings::Secret(u));
            }
            if advertise.is_some() {
                s.advertise = advertise;
            }
            if let Some(a) = metrics_http.filter(|a| !a.is_empty()) {
                s.metrics_http = Some(a);
            }
            s.public_dir = Some(public_dir.unwrap_or_else(|| {
                let abs = std::path::absolute(&s.dir).unwrap_or_else(|_| s.dir.clone());
                abs.parent()
                    .map(|p| p.join("pb_public"))
                    .unwrap_or_else(|| "pb_public".into())
            }));
            s.index_fallback = index_fallback;
            let _tracer = telemetry::init(&s)?;
            let ctx = open_app(&s, true).await?;
            let addr: SocketAddr = s
                .http
                .parse()
                .with_context(|| format!("invalid --http address {:?}", s.http))?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            if let Some(a) = s.metrics_http.clone() {
                let access = s.metrics_http_access.clone();
                let addr: SocketAddr = a
                    .parse()
                    .with_context(|| format!("invalid --metrics-http address {a:?}"))?;
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding {addr}"))?;
                tracing::info!(address = %l.local_addr()?, "metrics served");
                tokio::spawn(basalt_http::serve_metrics(ctx.clone(), l, access));
            }
            tracing::info!(address = %listener.local_addr()?, storage = %s.storage_description(), target = %s.target, "basalt serving");
            if s.target == "worker" {
                println!(
                    "Worker started (probes at http://{}/livez and /readyz)",
                    listener.local_addr()?
                );
            } else {
                println!(
                    "Server started at http://{}\n├─ REST API: http://{}/api/",
                    listener.local_addr()?,
                    listener.local_addr()?
                );
            }
            basalt_http::serve_with(
                ctx,
                listener,
                shutdown_signal(),
                s.lifecycle,
                s.connections.clone(),
                s.metrics.clone(),
            )
            .await?;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Superuser { action } => superuser(action).await,
        Command::Schema { action } => schema(action).await,
        Command::Typegen { lang } => typegen(lang).await,
        Command::Import {
            from:
                ImportCmd::Pocketbase {
                    pb_data,
                    force,
                    storage,
                },
        } => import_pocketbase(&pb_data, force, &storage).await,
        Command::Pii {
            action: PiiCmd::Keygen,
        } => {
            println!("{}", basalt_service::keyring::generate_key());
            Ok(())
        }
        Command::Pii {
            action: PiiCmd::Rotate { storage },
        } => {
            let s = Settings::load(&storage, None, None)?;
            telemetry::init(&s)?;
            let ctx = open_app(&s, false).await?;
            let started = std::time::Instant::now();
            let n = basalt_service::privacy::rotate(&ctx, |coll, done, left| {
                let all = done + left;
                let pct = (done * 100).checked_div(all).unwrap_or(100);
                eprintln!("{coll}: {done}/{all} rewrapped ({pct}%)");
            })
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.0))?;
            println!(
                "Rewrapped {n} records under key {:?} in {:.1}s.",
                ctx.pii.as_ref().map(|r| r.primary_id()).unwrap_or(""),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Pii {
            action:
                PiiCmd::Erase {
                    collection,
                    id,
                    storage,
                },
        } => {
            let s = Settings::load(&storage, None, None)?;
            telemetry::init(&s)?;
            let ctx = open_app(&s, false).await?;
            basalt_service::privacy::erase(&ctx, &collection, &id)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.0))?;
            println!("Erased the pii of {collection}/{id}.");
            Ok(())
        }
    }
}
