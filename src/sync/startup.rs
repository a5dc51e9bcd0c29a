//! The sync `serve` runs in the background once it listens: it never delays serving, and on
//! failure (Kapso down, a bad key) it logs one error and tries again with exponential backoff
//! until it succeeds or the server shuts down. [`SyncStatus`] is what `/readyz` shows.

use std::fmt;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{sync_webhooks, SyncOptions};
use crate::config::Config;
use crate::kapso::KapsoClient;

/// The startup sync's state, as `/readyz` reports it under `webhook_sync`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStatus {
    /// No startup sync: no `server.public_url`, `[sync] on_startup = false` or `--no-sync`.
    Disabled,
    /// Not finished yet (first attempt running).
    Pending,
    /// The last attempt failed with this error; another one is scheduled.
    Retrying(String),
    /// Kapso's webhooks match the config.
    Ok,
}

impl fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncStatus::Disabled => f.write_str("disabled"),
            SyncStatus::Pending => f.write_str("pending"),
            SyncStatus::Retrying(error) => write!(f, "retrying: {error}"),
            SyncStatus::Ok => f.write_str("ok"),
        }
    }
}

/// Whether `serve` syncs at startup: a public URL, `on_startup`, and a key to call Kapso with.
pub fn runs_at_startup(config: &Config) -> bool {
    config.server.public_url.is_some() && config.sync.on_startup && config.kapso.api_key.is_some()
}

/// Syncs until it succeeds or `shutdown` is cancelled, publishing progress on `status`.
/// An attempt in flight at shutdown is dropped; the next start syncs again.
pub async fn run_startup_sync(
    config: Config,
    kapso: KapsoClient,
    status: watch::Sender<SyncStatus>,
    shutdown: CancellationToken,
) {
    let options = SyncOptions {
        dry_run: false,
        prune: config.sync.prune,
    };
    let max = Duration::from_millis(config.sync.retry_max_ms);
    let mut delay = Duration::from_millis(config.sync.retry_initial_ms);
    let mut last_error: Option<String> = None;
    loop {
        let attempt = tokio::select! {
            result = sync_webhooks(&config, &kapso, &options) => result,
            () = shutdown.cancelled() => return,
        };
        match attempt {
            Ok(report) => {
                for line in report.summary_lines() {
                    tracing::info!("webhook sync: {line}");
                }
                if last_error.is_some() {
                    tracing::info!("webhook sync succeeded after retrying");
                }
                status.send_replace(SyncStatus::Ok);
                return;
            }
            Err(err) => {
                let message = err.to_string();
                if last_error.as_deref() == Some(message.as_str()) {
                    tracing::debug!(error = %message, retry_in_ms = delay.as_millis() as u64, "webhook sync failed again");
                } else {
                    tracing::error!(error = %message, retry_in_ms = delay.as_millis() as u64,
                        "webhook sync failed; still serving (webhooks already on Kapso keep delivering), retrying with backoff");
                }
                status.send_replace(SyncStatus::Retrying(message.clone()));
                last_error = Some(message);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return,
        }
        delay = (delay * 2).min(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_as_readyz_shows_it() {
        assert_eq!(SyncStatus::Ok.to_string(), "ok");
        assert_eq!(SyncStatus::Pending.to_string(), "pending");
        assert_eq!(SyncStatus::Disabled.to_string(), "disabled");
        assert_eq!(
            SyncStatus::Retrying("Kapso rejected the API key".to_owned()).to_string(),
            "retrying: Kapso rejected the API key"
        );
    }
}
