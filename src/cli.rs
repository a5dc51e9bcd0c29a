//! The command line: `serve`, `check`, `events list|show`, `jobs list|retry`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, EMBEDDED_DEFAULT_NAME};
use crate::db;
use crate::inbox::store::{self, EventFilter};
use crate::jobs::store::{self as job_store, JobFilter};
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
            events(&config, command).await
        }
        Command::Jobs { config, command } => {
            let config = load_or_default(config.as_deref())?;
            jobs(&config, command).await
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

async fn events(config: &Config, command: EventsCommand) -> anyhow::Result<()> {
    let pool = db::open_existing(&config.storage).await?;
    match command {
        EventsCommand::List {
            quarantined: true,
            limit,
            json,
            ..
        } => {
            let entries = store::list_quarantine(&pool, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
                return Ok(());
            }
            let rows = entries
                .iter()
                .map(|q| {
                    vec![
                        q.id.to_string(),
                        format_ms(q.received_at),
                        q.webhook.clone(),
                        q.event_header.clone().unwrap_or_else(|| "-".into()),
                        q.body.len().to_string(),
                        q.reason.clone(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "RECEIVED",
                    "WEBHOOK",
                    "EVENT HEADER",
                    "BYTES",
                    "REASON",
                ],
                rows,
            );
        }
        EventsCommand::List {
            flagged,
            webhook,
            event_type,
            limit,
            json,
            ..
        } => {
            let filter = EventFilter {
                webhook,
                event_type,
                flagged_only: flagged,
                limit,
            };
            let events = store::list_events(&pool, &filter).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&events)?);
                return Ok(());
            }
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            let rows = events
                .iter()
                .map(|e| {
                    vec![
                        e.id.to_string(),
                        format_ms(e.received_at),
                        e.webhook.clone(),
                        e.event_type.clone(),
                        dash(&e.phone_number_id),
                        dash(&e.conversation_id),
                        dash(&e.message_id),
                        dash(&e.flags),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "RECEIVED",
                    "WEBHOOK",
                    "TYPE",
                    "PHONE NUMBER",
                    "CONVERSATION",
                    "MESSAGE",
                    "FLAGS",
                ],
                rows,
            );
        }
        EventsCommand::Show {
            id,
            quarantined: true,
            json,
        } => {
            let entry = store::get_quarantine(&pool, id)
                .await?
                .with_context(|| format!("no quarantined delivery with id {id}"))?;
            let body = String::from_utf8_lossy(&entry.body).into_owned();
            if json {
                let mut value = serde_json::to_value(&entry)?;
                value["body"] = serde_json::Value::String(body);
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("id:              {}", entry.id);
                println!("delivery:        {}", entry.delivery_id);
                println!("received:        {}", format_ms(entry.received_at));
                println!("webhook:         {}", entry.webhook);
                println!("reason:          {}", entry.reason);
                println!(
                    "event header:    {}",
                    entry.event_header.as_deref().unwrap_or("-")
                );
                println!(
                    "idempotency key: {}",
                    entry.idempotency_key.as_deref().unwrap_or("-")
                );
                println!("sha256:          {}", entry.body_sha256);
                println!("body ({} bytes):\n{body}", entry.body.len());
            }
        }
        EventsCommand::Show { id, json, .. } => {
            let event = store::get_event(&pool, id)
                .await?
                .with_context(|| format!("no event with id {id}"))?;
            let payload: serde_json::Value =
                serde_json::from_str(&event.payload).unwrap_or(serde_json::Value::Null);
            if json {
                let mut value = serde_json::to_value(&event)?;
                value["payload"] = payload;
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                println!("id:              {}", event.id);
                println!("delivery:        {}", event.delivery_id);
                println!("received:        {}", format_ms(event.received_at));
                println!("webhook:         {}", event.webhook);
                println!("type:            {}", event.event_type);
                println!("payload version: {}", event.payload_version);
                println!("dedupe key:      {}", event.dedupe_key);
                println!("phone number id: {}", dash(&event.phone_number_id));
                println!("conversation:    {}", dash(&event.conversation_id));
                println!("message:         {}", dash(&event.message_id));
                println!("message type:    {}", dash(&event.message_type));
                println!("direction:       {}", dash(&event.direction));
                println!("idempotency key: {}", dash(&event.idempotency_key));
                println!("flags:           {}", dash(&event.flags));
                println!("payload:\n{}", serde_json::to_string_pretty(&payload)?);
            }
        }
    }
    pool.close().await;
    Ok(())
}

async fn jobs(config: &Config, command: JobsCommand) -> anyhow::Result<()> {
    let pool = db::open_existing(&config.storage).await?;
    match command {
        JobsCommand::List {
            dead,
            state,
            route,
            limit,
            json,
        } => {
            let filter = JobFilter {
                state: if dead { Some("dead".to_owned()) } else { state },
                route,
                limit,
            };
            let rows = job_store::list(&pool, &filter).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let rows = rows
                    .iter()
                    .map(|j| {
                        vec![
                            j.id.to_string(),
                            j.route.clone(),
                            j.handler.clone(),
                            j.state.clone(),
                            format!("{}/{}", j.attempts, j.max_attempts),
                            j.event_ids.clone(),
                            format_ms(j.run_at),
                            j.last_error.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "ID",
                        "ROUTE",
                        "HANDLER",
                        "STATE",
                        "ATTEMPTS",
                        "EVENTS",
                        "RUN AT",
                        "LAST ERROR",
                    ],
                    rows,
                );
            }
        }
        JobsCommand::Retry { id } => {
            let job = job_store::get(&pool, id)
                .await?
                .with_context(|| format!("no job with id {id}"))?;
            if !job_store::retry_now(&pool, id, crate::clock::now_ms()).await? {
                anyhow::bail!(
                    "job {id} is {}; only dead or queued jobs can be retried",
                    job.state
                );
            }
            println!("job {id} ({}) queued to run again", job.route);
        }
    }
    pool.close().await;
    Ok(())
}

fn format_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    if rows.is_empty() {
        println!("(none)");
    }
    for row in rows {
        line(row);
    }
}
