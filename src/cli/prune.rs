//! `switchboard prune [--dry-run]`: the server's retention run by hand, with the ages of the
//! config's `[retention]` (defaults without `--config`). It writes through a connection of its
//! own, one short batch per transaction with a pause between batches, so the running server's
//! writer gets the database in between (its busy timeout covers one batch).

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::storage::DbArgs;
use super::table::print_table;
use crate::config::RetentionConfig;
use crate::retention::{self, store, Pacing, Pruned};

/// Shortest pause between two batches of the command line: SQLite's busy handler retries a
/// waiting writer (the server) about every 100 ms, so a shorter gap could keep it waiting.
const MIN_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Count what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// JSON output: `{"dry_run", "deleted": {table: rows}}`.
    #[arg(long)]
    pub json: bool,
}

pub async fn prune(args: PruneArgs) -> anyhow::Result<()> {
    let config = match &args.db.config {
        Some(file) => RetentionConfig::load_only(file)?,
        None => RetentionConfig::default(),
    };
    let pool = args.db.open().await?;
    let result = run(&pool, &config, args.dry_run).await;
    pool.close().await;
    let pruned = result?;
    if args.json {
        let out = serde_json::json!({ "dry_run": args.dry_run, "deleted": pruned });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let header = if args.dry_run {
            "WOULD DELETE"
        } else {
            "DELETED"
        };
        let rows = pruned
            .tables()
            .iter()
            .map(|(table, n)| vec![(*table).to_owned(), n.to_string()])
            .collect();
        print_table(&["TABLE", header], rows);
    }
    Ok(())
}

async fn run(
    pool: &sqlx::SqlitePool,
    config: &RetentionConfig,
    dry_run: bool,
) -> anyhow::Result<Pruned> {
    let migrated = crate::db::migrations_applied(pool)
        .await
        .context("reading the database's migrations")?;
    if !migrated {
        bail!("the database has migrations this binary would apply: start `switchboard serve` of this version once, then prune");
    }
    let cutoffs = retention::cutoffs(config, crate::clock::now_ms());
    if dry_run {
        return store::count(pool, &cutoffs)
            .await
            .context("counting old rows");
    }
    let pacing = Pacing {
        batch_size: config.batch_size,
        pause: Duration::from_millis(config.pause_ms).max(MIN_PAUSE),
        priority: None,
        shutdown: CancellationToken::new(),
    };
    retention::prune(pool, &cutoffs, &pacing, None)
        .await
        .context("deleting old rows")
}
