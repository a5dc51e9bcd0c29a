//! `switchboard backup OUT`: a consistent copy of the database, safe while the server runs
//! (SQLite's `VACUUM INTO` reads one snapshot; copying the file alone would miss what is still in
//! the `-wal` file).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use super::storage::DbArgs;

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Where to write the copy: a new file (an existing one is not overwritten).
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    if args.out.exists() {
        bail!(
            "{} already exists: choose a new file name (a backup never overwrites)",
            args.out.display()
        );
    }
    let Some(out) = args.out.to_str() else {
        bail!("{}: the path must be valid UTF-8", args.out.display());
    };
    let pool = args.db.open().await?;
    let result = sqlx::query("VACUUM INTO ?")
        .bind(out)
        .execute(&pool)
        .await
        .with_context(|| format!("writing the backup to {out}"));
    pool.close().await;
    result?;
    let bytes = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    println!("backup written to {out} ({bytes} bytes)");
    Ok(())
}
