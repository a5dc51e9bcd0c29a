//! The command line: `serve`, `check`, `events list|show|replay`, `jobs list|retry`,
//! `routes list|pause|resume`, plus the
//! Kapso-facing `send`, `phone-numbers list` and `simulate`, the self-contained `demo` and the
//! container's `healthcheck`. One module per command group.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, EMBEDDED_DEFAULT_NAME};

mod backup;
mod catch_up;
mod demo;
mod events;
mod healthcheck;
mod jobs;
mod phone_numbers;
mod prune;
mod routes;
mod send;
mod simulate;
mod storage;
pub mod table;
mod webhooks;
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Receive, verify, store and route Kapso WhatsApp webhooks"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook server.
    Serve {
        /// Config file. Without it, the embedded development config is used.
        #[arg(long, env = "SWITCHBOARD_CONFIG")]
        config: Option<PathBuf>,
        /// Override `server.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Do not sync the Kapso webhooks at startup (as `[sync] on_startup = false`).
        #[arg(long)]
        no_sync: bool,
    },
    /// Validate a config file and exit (non-zero with the reason when it is invalid).
    Check {
        /// Config file to validate; every ${VAR} it uses must be set.
        #[arg(long, env = "SWITCHBOARD_CONFIG")]
        config: PathBuf,
    },
    /// Read the inbox.
    Events {
        #[command(flatten)]
        db: storage::DbArgs,
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Inspect and replay handler jobs.
    Jobs {
        #[command(flatten)]
        db: storage::DbArgs,
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// List the routes, pause one (its jobs wait) or resume it.
    Routes {
        #[command(flatten)]
        db: storage::DbArgs,
        #[command(subcommand)]
        command: routes::RoutesCommand,
    },
    /// Kapso's webhooks: list them, make them match [[webhooks]], trigger a test delivery.
    Webhooks {
        /// Config file. Without it, the embedded development config is used.
        #[arg(long, global = true, env = "SWITCHBOARD_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: webhooks::WebhooksCommand,
    },
    /// Send one message through the Kapso Meta proxy; prints its wamid.
    Send(send::SendArgs),
    /// The Kapso project's phone numbers.
    PhoneNumbers {
        #[command(subcommand)]
        command: phone_numbers::PhoneNumbersCommand,
    },
    /// Sign and post sample Kapso events to a running server, as Kapso would.
    Simulate(simulate::SimulateArgs),
    /// Run the whole pipeline on this machine against a built-in simulated Kapso.
    Demo(demo::DemoArgs),
    /// Exit 0 when the server answers /healthz (for container health checks).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Write a consistent copy of the database to a new file, safe while the server runs.
    Backup(backup::BackupArgs),
    /// Read Kapso's message history and store the messages switchboard missed (an outage).
    CatchUp(catch_up::CatchUpArgs),
    /// Delete rows past their [retention] age now (the server does it every retention.interval).
    Prune(prune::PruneArgs),
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Newest jobs first.
    List {
        /// Only dead-lettered jobs.
        #[arg(long)]
        dead: bool,
        /// Only jobs in this state: queued, running, done, dead.
        #[arg(long)]
        state: Option<String>,
        /// Only jobs of this route (its `name` in [[routes]]).
        #[arg(long)]
        route: Option<String>,
        /// Show at most this many jobs.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// JSON output, one array (`event_ids` is an array of event ids).
        #[arg(long)]
        json: bool,
    },
    /// Queue a dead (or waiting) job to run again now, with a fresh attempt budget. Messages it
    /// already sent are not sent again.
    Retry {
        /// The job's id (the ID column of `jobs list`).
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Newest events first.
    List {
        /// Show quarantined deliveries (bodies that could not be understood) instead.
        #[arg(long)]
        quarantined: bool,
        /// Only events flagged for attention (unknown type, missing identifier, partial v1).
        #[arg(long)]
        flagged: bool,
        /// Only events received on this [[webhooks]] entry (by name).
        #[arg(long)]
        webhook: Option<String>,
        /// Only events of this type; the same patterns as a route's `on`: an exact type,
        /// a prefix such as `whatsapp.message.*`, or `*`.
        #[arg(long = "type", value_name = "PATTERN")]
        event_type: Option<String>,
        /// Only events of this Kapso conversation (its id).
        #[arg(long, value_name = "ID")]
        conversation: Option<String>,
        /// Only events whose payload contains this text (as Kapso sent it; case-sensitive).
        #[arg(long)]
        text: Option<String>,
        /// Only events carrying this flag, e.g. `backfilled` (recovered by catch-up).
        #[arg(long)]
        flag: Option<String>,
        /// Only events received within this long before now, e.g. `30m`, `6h`, `2d`.
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// Show at most this many events.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// JSON output, one array.
        #[arg(long)]
        json: bool,
    },
    /// Run a stored event through the routes of --config again: a new job per matching route
    /// that has no job for it yet (a running server picks them up, as with `jobs retry`).
    Replay {
        /// The event's id (the ID column of `events list`).
        id: i64,
        /// Also replay routes that already have a job for the event (may send the customer
        /// the same answer again).
        #[arg(long)]
        force: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// One event in full (or one quarantined body with --quarantined).
    Show {
        /// The event's id (the ID column of `events list`).
        id: i64,
        /// ID is a quarantined delivery's id (from `events list --quarantined`).
        #[arg(long)]
        quarantined: bool,
        /// JSON output, one object with the payload embedded.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a parsed command line.
pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            no_sync,
        } => serve(config, listen, no_sync).await,
        Command::Check { config } => {
            let loaded = Config::load(&config)?;
            let plural = |n: usize| if n == 1 { "" } else { "s" };
            println!(
                "{}: ok ({} webhook{}, {} route{}, database {})",
                config.display(),
                loaded.webhooks.len(),
                plural(loaded.webhooks.len()),
                loaded.routes.len(),
                plural(loaded.routes.len()),
                loaded.storage.url
            );
            if loaded.admin.enabled() {
                let on = loaded.server.ops_listen.map_or_else(
                    || "server.listen".to_owned(),
                    |a| format!("server.ops_listen {a}"),
                );
                println!("admin API: on at /admin/api ({on}), bearer token from admin.token");
            } else {
                println!("admin API: off (set admin.token to turn it on)");
            }
            Ok(())
        }
        Command::Events {
            db,
            command: EventsCommand::Replay { id, force, json },
        } => {
            let config = load_or_default(db.config.as_deref())?;
            let pool = db.open().await?;
            let result = events::replay(&config, &pool, id, force, json).await;
            pool.close().await;
            result
        }
        Command::Events { db, command } => {
            let pool = db.open().await?;
            let result = events::events(&pool, command).await;
            pool.close().await;
            result
        }
        Command::Jobs { db, command } => {
            let pool = db.open().await?;
            let result = jobs::jobs(&pool, command).await;
            pool.close().await;
            result
        }
        Command::Routes { db, command } => {
            let config = load_or_default(db.config.as_deref())?;
            let pool = db.open().await?;
            let result = routes::routes(&config, &pool, command).await;
            pool.close().await;
            result
        }
        Command::Webhooks { config, command } => {
            let config = load_or_default(config.as_deref())?;
            webhooks::webhooks(&config, command).await
        }
        Command::Send(args) => {
            let config = load_or_default(args.config.as_deref())?;
            send::send(&config, args).await
        }
        Command::PhoneNumbers {
            command: phone_numbers::PhoneNumbersCommand::List { config, json },
        } => phone_numbers::list(&load_or_default(config.as_deref())?, json).await,
        Command::Simulate(args) => {
            let config = load_or_default(args.config.as_deref())?;
            simulate::simulate(&config, args).await
        }
        Command::Demo(args) => demo::demo(args).await,
        Command::Healthcheck(args) => healthcheck::healthcheck(args).await,
        Command::Backup(args) => backup::backup(args).await,
        Command::Prune(args) => prune::prune(args).await,
        Command::CatchUp(args) => {
            let config = load_or_default(args.config.as_deref())?;
            catch_up::catch_up(&config, args).await
        }
    }
}

impl Cli {
    /// The log filter used when `RUST_LOG` is unset: `demo` narrates on stdout and keeps the
    /// server's own logs to warnings.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Demo(_) => "warn",
            _ => crate::telemetry::DEFAULT_FILTER,
        }
    }
}

fn load_or_default(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Ok(Config::load(path)?),
        None => Ok(Config::embedded_default()?),
    }
}

async fn serve(
    config_path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    no_sync: bool,
) -> anyhow::Result<()> {
    let mut config = load_or_default(config_path.as_deref())?;
    if config_path.is_none() {
        tracing::warn!(
            config = EMBEDDED_DEFAULT_NAME,
            "no --config given: using the embedded development config (loopback only; set SWITCHBOARD_WEBHOOK_SECRET)"
        );
    }
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    if no_sync {
        config.sync.on_startup = false;
    }
    let addr = config.server.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (server.listen)"))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    crate::run(config, listener, shutdown).await
}

/// Cancels `token` on SIGINT or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
    token.cancel();
}
