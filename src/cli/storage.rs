//! Where the database commands (`events`, `jobs`) find the database: `--db PATH`, else the
//! `[storage]` table of `--config FILE`, else the embedded default config's. Only storage
//! settings are read, so these commands need no webhook secret or Kapso API key.

use std::path::{Path, PathBuf};

use clap::Args;
use sqlx::SqlitePool;

use crate::config::{ConfigError, StorageConfig, EMBEDDED_DEFAULT_NAME};
use crate::db::{self, DbError};

/// `--db` / `--config` of the commands that only need the database.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// SQLite database file to use (the file of the server's `storage.url`). Takes precedence
    /// over --config.
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Config file whose [storage] table names the database. Only [storage] is read (and, by
    /// `prune`, [retention]), so other tables' ${VAR}s need not be set. Without --db and --config: the embedded config's
    /// database, data/switchboard.db under the working directory.
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenDbError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--db `{0}`: the path must be valid UTF-8 and contain no `?`")]
    UnusablePath(String),
    #[error("no database at {path} ({origin}); {hint}")]
    Missing {
        path: String,
        origin: String,
        hint: &'static str,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Where the storage settings came from, for error messages.
enum Origin {
    DbFlag,
    ConfigFile(PathBuf),
    Embedded,
}

impl DbArgs {
    /// The storage settings these arguments select.
    fn storage(&self) -> Result<(StorageConfig, Origin), OpenDbError> {
        if let Some(path) = &self.db {
            return Ok((storage_for_file(path)?, Origin::DbFlag));
        }
        match &self.config {
            Some(file) => Ok((
                StorageConfig::load_only(file)?,
                Origin::ConfigFile(file.clone()),
            )),
            None => Ok((StorageConfig::embedded_default()?, Origin::Embedded)),
        }
    }

    /// Opens the existing database (never creates one).
    pub async fn open(&self) -> Result<SqlitePool, OpenDbError> {
        let (storage, origin) = self.storage()?;
        if let Some(path) = storage.sqlite_path().filter(|p| !p.exists()) {
            return Err(missing(&path, &origin));
        }
        Ok(db::open_existing(&storage).await?)
    }
}

/// Default storage settings for the SQLite file at `path`.
fn storage_for_file(path: &Path) -> Result<StorageConfig, OpenDbError> {
    let unusable = || OpenDbError::UnusablePath(path.display().to_string());
    let text = path.to_str().ok_or_else(unusable)?;
    if text.is_empty() || text.contains('?') {
        return Err(unusable());
    }
    Ok(StorageConfig {
        url: format!("sqlite://{text}"),
        ..StorageConfig::default()
    })
}

fn missing(path: &Path, origin: &Origin) -> OpenDbError {
    let mut shown = path.display().to_string();
    if path.is_relative() {
        if let Ok(dir) = std::env::current_dir() {
            shown = format!("{shown} (that is {})", dir.join(path).display());
        }
    }
    let (origin, hint) = match origin {
        Origin::DbFlag => (
            "given with --db".to_owned(),
            "check the path, or pass `--config FILE` with the config the server runs with",
        ),
        Origin::ConfigFile(file) => (
            format!("storage.url of {}", file.display()),
            "start `switchboard serve` with this config to create it, or pass `--db PATH` with the server's database file",
        ),
        Origin::Embedded => (
            format!("storage.url of the {EMBEDDED_DEFAULT_NAME}, as neither --db nor --config was given"),
            "pass `--db PATH` with the server's database file, or `--config FILE` with the config the server runs with",
        ),
    };
    OpenDbError::Missing {
        path: shown,
        origin,
        hint,
    }
}
