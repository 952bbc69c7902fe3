//! The typed settings tree: defaults < config file (TOML) < `BASALT_*` environment < CLI flags.
//! Unknown keys in the file are rejected; the database URL is a [`Secret`] and never printed.

use std::path::PathBuf;

use anyhow::Context;
use serde::Deserialize;

/// A value that never appears in logs or debug output.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

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
        let s = Settings {
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
        };
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !matches!(self.target.as_str(), "all" | "api") {
            anyhow::bail!(
                "unknown --target {:?}: this version runs `all` or `api` (see --list-targets)",
                self.target
            );
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
