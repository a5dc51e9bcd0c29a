//! The command line: `serve`, `check`, `events list|show`, `jobs list|retry`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, EMBEDDED_DEFAULT_NAME};

mod events;
mod jobs;
pub mod table;
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
    },
    /// Validate a config file and exit (non-zero with the reason when it is invalid).
    Check {
        #[arg(long, env = "SWITCHBOARD_CONFIG")]
        config: PathBuf,
    },
    /// Read the inbox.
    Events {
        #[arg(long, global = true, env = "SWITCHBOARD_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Inspect and replay handler jobs.
    Jobs {
        #[arg(long, global = true, env = "SWITCHBOARD_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: JobsCommand,
    },
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
        #[arg(long)]
        route: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Queue a dead (or waiting) job to run again now, with a fresh attempt budget. Messages it
    /// already sent are not sent again.
    Retry { id: i64 },
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
        #[arg(long)]
        webhook: Option<String>,
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// JSON output, one array.
        #[arg(long)]
        json: bool,
    },
    /// One event in full (or one quarantined body with --quarantined).
    Show {
        id: i64,
        #[arg(long)]
        quarantined: bool,
        #[arg(long)]
        json: bool,
    },
}

/// Runs a parsed command line.
pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, listen } => serve(config, listen).await,
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
            Ok(())
        }
        Command::Events { config, command } => {
            let config = load_or_default(config.as_deref())?;
            events::events(&config, command).await
        }
        Command::Jobs { config, command } => {
            let config = load_or_default(config.as_deref())?;
            jobs::jobs(&config, command).await
        }
    }
}

fn load_or_default(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Ok(Config::load(path)?),
        None => Ok(Config::embedded_default()?),
    }
}

async fn serve(config_path: Option<PathBuf>, listen: Option<SocketAddr>) -> anyhow::Result<()> {
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
