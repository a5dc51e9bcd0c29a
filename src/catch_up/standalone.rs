//! A catch-up run outside `serve`, for `switchboard catch-up`.

use std::sync::Arc;

use super::{CatchUp, RunOptions, RunReport};
use crate::clock::Clock;
use crate::config::Config;
use crate::inbox::Inbox;
use crate::kapso::KapsoClient;
use crate::router::Router;

/// One run outside `serve` (`switchboard catch-up`): opens (and migrates) the database, writes
/// through an inbox writer of its own and closes everything before returning. A running server
/// picks the stored events up on its dispatcher's next poll.
pub async fn run_standalone(config: &Config, options: RunOptions) -> anyhow::Result<RunReport> {
    use anyhow::Context;
    let kapso = KapsoClient::new(&config.kapso).context("setting up the Kapso client")?;
    let routes = Arc::new(Router::new(config).context("compiling [[routes]]")?);
    let pool = crate::db::open_for_server(&config.storage).await?;
    let group_commit = crate::inbox::GroupCommit {
        synchronous: config.storage.synchronous,
        connection_synchronous: config.storage.pipeline_synchronous,
        ..crate::inbox::GroupCommit::default()
    };
    let (inbox, writer) = Inbox::start(
        pool.clone(),
        group_commit,
        Arc::new(tokio::sync::Notify::new()),
        crate::write_priority::WritePriority::default(),
        crate::write_health::WriteHealth::default(),
    );
    let catch_up = CatchUp {
        config: Arc::new(config.clone()),
        kapso,
        pool: pool.clone(),
        inbox,
        routes,
        clock: Clock::System,
    };
    let report = catch_up.run(options).await;
    drop(catch_up);
    let _ = writer.await;
    pool.close().await;
    Ok(report)
}
