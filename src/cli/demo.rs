//! `switchboard demo`: runs [`crate::demo`], the whole pipeline against a simulated Kapso.

use std::path::PathBuf;

use clap::Args;

use crate::demo::{self as scene, DemoOptions};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// SQLite file to use (created if missing). Default: a fresh temporary directory.
    #[arg(long)]
    pub db: Option<PathBuf>,
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    scene::run(DemoOptions { db: args.db }).await
}
