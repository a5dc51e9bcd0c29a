//! The SQLite pool (WAL, durable commits, busy timeout, foreign keys, the optional size cap of
//! `storage.max_size_mb` on every connection) and the migrations in
//! `migrations/`, embedded in the binary.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::config::{StorageConfig, Synchronous};

mod access;
mod size_cap;

pub use access::AccessDenied;

/// The schema, compiled in from `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Errors of opening the database. The underlying error is the `source`, not repeated in the
/// message: `main` prints the whole chain (`{:#}`), so each cause reaches the user once.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("storage.url `{0}` is not a SQLite URL")]
    NotSqlite(String),
    #[error("cannot create the database directory {path}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The database directory (or file) is not writable by this process: says by whom it must be.
    #[error(transparent)]
    AccessDenied(Box<AccessDenied>),
    #[error("no database at {0}: start `switchboard serve` with this config first")]
    Missing(String),
    #[error("cannot open the database {path}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot lock {path}")]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("another `switchboard serve` is using this database (it holds {0}); stop it first, or give this server its own storage.url")]
    InUse(String),
    #[error("cannot apply migrations to {path}")]
    Migrate {
        path: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

/// A migrated database in a fresh temporary directory, for tests; it lives as long as the
/// directory.
#[cfg(test)]
pub(crate) async fn temp_database() -> (tempfile::TempDir, SqlitePool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = StorageConfig {
        url: format!("sqlite://{}", dir.path().join("switchboard.db").display()),
        ..StorageConfig::default()
    };
    let pool = open_for_server(&storage).await.expect("open");
    (dir, pool)
}

/// Opens (creating if needed) the database for the server and applies pending migrations.
pub async fn open_for_server(storage: &StorageConfig) -> Result<SqlitePool, DbError> {
    let path = storage
        .sqlite_path()
        .ok_or_else(|| DbError::NotSqlite(storage.url.clone()))?;
    let dir = database_dir(&path);
    std::fs::create_dir_all(dir).map_err(|source| {
        if access::is_permission_error(&source) {
            denied(access::Step::CreateDir, dir, source.to_string())
        } else {
            DbError::CreateDir {
                path: dir.display().to_string(),
                source,
            }
        }
    })?;
    let pool = connect(storage, true).await.map_err(|err| match err {
        DbError::Open { source, .. } if access::is_sqlite_access_error(&source) => {
            denied(access::Step::Open, dir, source.to_string())
        }
        other => other,
    })?;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|source| DbError::Migrate {
            path: path.display().to_string(),
            source,
        })?;
    Ok(pool)
}

/// The directory of the database file (`.` for a bare file name).
fn database_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn denied(step: access::Step, dir: &Path, cause: String) -> DbError {
    DbError::AccessDenied(Box::new(AccessDenied::new(step, dir, cause)))
}

/// Opens an existing database for the command line; never creates one.
pub async fn open_existing(storage: &StorageConfig) -> Result<SqlitePool, DbError> {
    let path = storage
        .sqlite_path()
        .ok_or_else(|| DbError::NotSqlite(storage.url.clone()))?;
    if !path.exists() {
        return Err(DbError::Missing(path.display().to_string()));
    }
    connect(storage, false).await
}

/// The database file of `storage` and the options every connection to it starts from.
fn file_options(storage: &StorageConfig) -> Result<(PathBuf, SqliteConnectOptions), DbError> {
    let path = storage
        .sqlite_path()
        .ok_or_else(|| DbError::NotSqlite(storage.url.clone()))?;
    let options = SqliteConnectOptions::from_str("sqlite://")
        .map_err(|source| DbError::Open {
            path: path.display().to_string(),
            source,
        })?
        .filename(&path)
        .busy_timeout(Duration::from_millis(storage.busy_timeout_ms))
        .pragma("temp_store", "memory");
    Ok((path, options))
}

async fn connect(storage: &StorageConfig, create: bool) -> Result<SqlitePool, DbError> {
    let (path, options) = file_options(storage)?;
    let open_err = |source| DbError::Open {
        path: path.display().to_string(),
        source,
    };
    let max_bytes = storage.max_size_bytes();
    let options = options
        .create_if_missing(create)
        // The server checkpoints the WAL from its own connection (see `checkpoint_loop`), so
        // no commit of the writer stalls while pages are copied back and fsynced.
        .pragma("wal_autocheckpoint", if create { "0" } else { "1000" })
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match storage.pipeline_synchronous {
            Synchronous::Off => SqliteSynchronous::Off,
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Full => SqliteSynchronous::Full,
            Synchronous::Extra => SqliteSynchronous::Extra,
        })
        .foreign_keys(true);
    // One connection: every write of the process (inbox group commits, dispatch, job claims and
    // outcomes) queues in-process, first come first served, instead of colliding in SQLite and
    // sleeping in its busy handler, which measured as 100 ms-1 s stalls under load. WAL readers
    // elsewhere (the CLI) are not blocked. Callers must never hold a transaction of this pool
    // while acquiring another connection from it.
    SqlitePoolOptions::new()
        .max_connections(1)
        // A local file: no stale sockets to detect, so skip the ping on every acquire.
        .test_before_acquire(false)
        .min_connections(1)
        .after_connect(move |conn, _| Box::pin(size_cap::apply(conn, max_bytes)))
        .connect_with(options)
        .await
        .map_err(open_err)
}

/// Read-only connections for the pipeline's reads (events, send plans, due buffers), so they
/// never wait for the single writer connection. WAL lets them read while it writes.
pub async fn open_reads(storage: &StorageConfig, connections: u32) -> Result<SqlitePool, DbError> {
    let (path, options) = file_options(storage)?;
    let open_err = |source| DbError::Open {
        path: path.display().to_string(),
        source,
    };
    let options = options.read_only(true);
    let max_bytes = storage.max_size_bytes();
    SqlitePoolOptions::new()
        .max_connections(connections.max(1))
        .test_before_acquire(false)
        .after_connect(move |conn, _| Box::pin(size_cap::apply(conn, max_bytes)))
        .connect_with(options)
        .await
        .map_err(open_err)
}

/// Held while a server uses the database: its in-memory job schedule assumes no other server
/// runs the same jobs. Released when dropped (or when the process dies).
#[derive(Debug)]
pub struct ServerLock {
    _file: std::fs::File,
}

/// Takes `{database}.lock`, or fails naming the file when another server holds it.
pub fn lock_for_server(storage: &StorageConfig) -> Result<ServerLock, DbError> {
    let path = storage
        .sqlite_path()
        .ok_or_else(|| DbError::NotSqlite(storage.url.clone()))?;
    let mut lock_path = path.into_os_string();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| DbError::Lock {
            path: lock_path.display().to_string(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(ServerLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(DbError::InUse(lock_path.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(source)) => Err(DbError::Lock {
            path: lock_path.display().to_string(),
            source,
        }),
    }
}

/// Copies the WAL back into the database every `every`, from a connection of its own, so
/// that the writer never does it inside a commit. `PASSIVE`: it never blocks the writer or the
/// readers; what it cannot copy yet waits for the next round. Ends when `shutdown` fires.
pub async fn checkpoint_loop(
    storage: StorageConfig,
    writer: SqlitePool,
    priority: crate::write_priority::WritePriority,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use sqlx::ConnectOptions;
    let Ok((_, options)) = file_options(&storage) else {
        return;
    };
    let connected = match options.connect().await {
        Ok(mut conn) => size_cap::apply(&mut conn, storage.max_size_bytes())
            .await
            .map(|()| conn),
        Err(err) => Err(err),
    };
    let mut conn = match connected {
        Ok(conn) => conn,
        Err(err) => {
            tracing::error!(error = %err, "checkpoints: cannot open the database; the WAL is not checkpointed");
            return;
        }
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => break,
        }
        match checkpoint(&mut conn).await {
            Ok(frames) if frames > WAL_RESTART_FRAMES => {
                // Under steady load some reader always holds a snapshot that needs the WAL, so
                // it is never started over and grows without end: start it over now. This runs
                // on the writer connection itself, in its turn after the inbox, so the other
                // writers wait for it in-process instead of sleeping in SQLite's busy handler.
                let started = std::time::Instant::now();
                let rounds = match catch_up(&mut conn, frames).await {
                    Ok(rounds) => rounds,
                    Err(err) => {
                        tracing::warn!(error = %err, "checkpoints: WAL checkpoint failed, will retry");
                        continue;
                    }
                };
                priority.after_urgent().await;
                let held = std::time::Instant::now();
                let restarted = match writer.acquire().await {
                    Ok(mut conn) => restart(&mut conn).await,
                    Err(err) => Err(err),
                };
                match restarted {
                    Ok(()) => tracing::debug!(
                        frames,
                        rounds,
                        held_us = held.elapsed().as_micros() as u64,
                        took_ms = started.elapsed().as_millis() as u64,
                        "checkpoints: WAL started over"
                    ),
                    Err(err) => {
                        tracing::warn!(error = %err, "checkpoints: cannot start the WAL over, will retry")
                    }
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "checkpoints: WAL checkpoint failed, will retry")
            }
        }
    }
    let _ = sqlx::Connection::close(conn).await;
}

/// WAL frames (pages) past which the checkpointer starts the WAL over: about 256 MB with 4 KiB
/// pages (at 2,000 events/s the WAL grows about 25 MB/s, so this happens every ten seconds or so).
const WAL_RESTART_FRAMES: i64 = 65_536;

/// Copies what it can of the WAL back into the database without waiting for anyone; returns
/// how many frames the WAL holds.
async fn checkpoint(conn: &mut sqlx::SqliteConnection) -> Result<i64, sqlx::Error> {
    let (_busy, frames, _copied): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(conn)
            .await?;
    Ok(frames)
}

/// Frames written during the last checkpoint round below which [`catch_up`] stops: what is
/// left for the restart to copy on the writer connection (about 1 MB).
const CAUGHT_UP_FRAMES: i64 = 256;

/// Most extra rounds of [`catch_up`].
const CATCH_UP_ROUNDS: u32 = 8;

/// Checkpoints again, off the writer connection, until a round finds few new frames: the
/// writes made while the previous round copied. A round over a large WAL takes a second or
/// more; without this, the restart would copy that second's writes while holding the writer
/// connection (measured: 60-90 ms stalls of every delivery while retention deleted rows).
/// Returns the rounds it took.
async fn catch_up(conn: &mut sqlx::SqliteConnection, frames: i64) -> Result<u32, sqlx::Error> {
    let mut last = frames;
    for round in 1..=CATCH_UP_ROUNDS {
        let now = checkpoint(conn).await?;
        // A WAL started over by someone else has fewer frames: nothing left to catch up.
        if now.saturating_sub(last) < CAUGHT_UP_FRAMES {
            return Ok(round);
        }
        last = now;
    }
    Ok(CATCH_UP_ROUNDS)
}

/// Copies the whole WAL back and makes the next commit write it from the start.
async fn restart(conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("PRAGMA wal_checkpoint(RESTART)")
        .execute(conn)
        .await
        .map(|_| ())
}

/// True when every embedded migration has been applied successfully.
pub async fn migrations_applied(pool: &SqlitePool) -> Result<bool, sqlx::Error> {
    let applied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
            .fetch_one(pool)
            .await?;
    let expected = MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .count();
    Ok(usize::try_from(applied).unwrap_or(0) >= expected)
}
