//! `switchboard routes list|pause|resume`: the admin API's route operations, with the routes
//! of `--config`; a running server applies a change within `jobs.poll_interval_ms` (through
//! `route_pause_requests`), and a stopped one when it starts.

use anyhow::Context;
use clap::Subcommand;
use sqlx::SqlitePool;

use super::table::{format_ms, print_table};
use crate::config::Config;
use crate::jobs::pause::{Changed, PauseError, Pauser, RouteStatus, Surface};
use crate::jobs::Reach;
use crate::router::Router;

#[derive(Debug, Subcommand)]
pub enum RoutesCommand {
    /// Every route of --config with its pause state and its queued, running and dead jobs
    /// (paused routes the config no longer has are listed too).
    List {
        /// JSON output, one array.
        #[arg(long)]
        json: bool,
    },
    /// Pause a route: its events still create jobs, but none starts until it is resumed
    /// (jobs already running finish).
    Pause {
        /// The route's `name` in [[routes]].
        name: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Resume a paused route: its waiting jobs run, in their original order.
    Resume {
        /// The route's `name` in [[routes]] (or a paused route the config no longer has).
        name: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

pub async fn routes(
    config: &Config,
    pool: &SqlitePool,
    command: RoutesCommand,
) -> anyhow::Result<()> {
    let router = Router::new(config).context("compiling [[routes]]")?;
    let pauser = Pauser {
        writer: pool,
        reads: pool,
        router: &router,
        apply: Reach::ByRequest,
    };
    let now = crate::clock::now_ms();
    match command {
        RoutesCommand::List { json } => {
            let routes = pauser.list().await.map_err(unmigrated)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&routes)?);
            } else {
                print_table(
                    &[
                        "ROUTE", "ON", "HANDLER", "STATE", "QUEUED", "RUNNING", "DEAD",
                    ],
                    routes.iter().map(row).collect(),
                );
            }
        }
        RoutesCommand::Pause { name, json } => {
            let changed = pauser
                .pause(&name, Surface::Cli, now)
                .await
                .map_err(pause_error)?;
            report(&changed, "paused", json)?;
        }
        RoutesCommand::Resume { name, json } => {
            let changed = pauser
                .resume(&name, Surface::Cli, now)
                .await
                .map_err(pause_error)?;
            report(&changed, "resumed", json)?;
        }
    }
    Ok(())
}

fn row(route: &RouteStatus) -> Vec<String> {
    let state = match (route.paused, route.paused_at) {
        (true, Some(at)) => format!(
            "paused since {} by {}",
            format_ms(at),
            route.paused_by.as_deref().unwrap_or("-")
        ),
        (true, None) => "paused".to_owned(),
        (false, _) => "active".to_owned(),
    };
    let name = if route.configured {
        route.name.clone()
    } else {
        format!("{} (not in the config)", route.name)
    };
    vec![
        name,
        route.on.join(","),
        route.handler.clone().unwrap_or_else(|| "-".into()),
        state,
        route.jobs.queued.to_string(),
        route.jobs.running.to_string(),
        route.jobs.dead.to_string(),
    ]
}

fn report(changed: &Changed, done: &str, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(changed)?);
        return Ok(());
    }
    let route = &changed.route;
    if changed.changed {
        println!(
            "route `{}` {done} ({} queued); a running server applies it within jobs.poll_interval_ms",
            route.name, route.jobs.queued
        );
    } else {
        println!("route `{}` was already {done}; nothing changed", route.name);
    }
    Ok(())
}

fn pause_error(err: PauseError) -> anyhow::Error {
    match err {
        PauseError::Database(err) => unmigrated(err),
        other => other.into(),
    }
}

/// A database this version's `serve` has not migrated yet has no `route_pauses` table.
fn unmigrated(err: sqlx::Error) -> anyhow::Error {
    let text = err.to_string();
    if text.contains("no such table") {
        anyhow::anyhow!(
            "{text}: start this version's `switchboard serve` once to migrate the database"
        )
    } else {
        err.into()
    }
}
