//! The sync `serve` runs in the background once it listens: it never delays serving, and on
//! failure (Kapso down, a bad key) it logs one error and tries again with exponential backoff
//! until it succeeds or the server shuts down. After its first success it syncs again every
//! `sync.interval` (unless off), so a webhook Kapso paused (`active: false`) or deleted while
//! the server runs is re-activated or re-created within one interval. A round that changes
//! nothing logs nothing at info. [`SyncState`] is what `/readyz` shows.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{sync_webhooks, SyncOptions, SyncReport};
use crate::clock::Clock;
use crate::config::Config;
use crate::kapso::KapsoClient;
use crate::metrics::Metrics;

/// The background sync's state, as `/readyz` reports it under `webhook_sync`.
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

/// The last finished sync run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastSync {
    /// When it finished (Unix ms, wall clock).
    pub at_ms: i64,
    /// `None` when it succeeded, else its error.
    pub error: Option<String>,
    /// Webhooks it changed, by action (`created`, `reactivated`, `updated`, `deleted`).
    pub changes: BTreeMap<&'static str, u64>,
    /// When a run last succeeded (Unix ms), this one or an earlier one.
    pub last_success_ms: Option<i64>,
}

/// What `/readyz` shows of the background sync: its status and its last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    pub status: SyncStatus,
    pub last: Option<LastSync>,
    /// Runs finished so far (startup and periodic, failed ones included).
    pub runs: u64,
}

impl SyncState {
    pub fn new(status: SyncStatus) -> SyncState {
        SyncState {
            status,
            last: None,
            runs: 0,
        }
    }

    /// `/readyz`'s `webhook_sync_last`: `null` before the first run, else
    /// `{"at", "result": "ok"|"failed", "error"?, "changes": {action: n}, "last_success_at"}`.
    pub fn last_json(&self) -> Value {
        let Some(last) = &self.last else {
            return Value::Null;
        };
        let iso = |ms: i64| crate::window::format_rfc3339(ms);
        let mut out = json!({
            "at": iso(last.at_ms),
            "result": if last.error.is_none() { "ok" } else { "failed" },
            "changes": last.changes,
            "last_success_at": last.last_success_ms.and_then(iso),
        });
        if let Some(error) = &last.error {
            out["error"] = json!(error);
        }
        out
    }
}

/// Whether `serve` syncs at startup: a public URL, `on_startup`, and a key to call Kapso with.
pub fn runs_at_startup(config: &Config) -> bool {
    config.server.public_url.is_some() && config.sync.on_startup && config.kapso.api_key.is_some()
}

/// Where the background sync reports, and the clock it waits on.
#[derive(Clone)]
pub struct SyncReporting {
    pub state: watch::Sender<SyncState>,
    pub metrics: Arc<Metrics>,
    /// Intervals and retry delays run on it (tests drive a manual one).
    pub clock: Clock,
}

/// Syncs until it succeeds, then every `sync.interval`, until `shutdown` is cancelled,
/// publishing each run on `reporting`. An attempt in flight at shutdown is dropped; the next
/// start syncs again.
pub async fn run_startup_sync(
    config: Config,
    kapso: KapsoClient,
    reporting: SyncReporting,
    shutdown: CancellationToken,
) {
    let interval = config.sync.interval.0;
    let mut round = Round::default();
    loop {
        if !sync_until_ok(&config, &kapso, &reporting, &shutdown, &mut round).await {
            return;
        }
        let Some(interval) = interval else {
            return;
        };
        if !sleep(&reporting.clock, interval, &shutdown).await {
            return;
        }
    }
}

/// Log-once bookkeeping across runs.
#[derive(Debug, Default)]
struct Round {
    /// Whether a run has succeeded yet (the first success logs its summary at info).
    succeeded_once: bool,
    /// The unreadable webhooks the last run warned about (id, url, error): each is warned
    /// about once, not every `sync.interval`.
    unreadable: Vec<(Option<String>, Option<String>, String)>,
}

impl Round {
    /// Warns about each webhook Kapso listed that this build cannot read and the last run did
    /// not already warn about; returns how many warnings it wrote.
    fn warn_unreadable(&mut self, report: &SyncReport) -> usize {
        let now: Vec<_> = report
            .undecodable
            .iter()
            .map(|odd| (odd.id.clone(), odd.url.clone(), odd.error.clone()))
            .collect();
        let mut warned = 0;
        for (id, url, error) in now.iter().filter(|odd| !self.unreadable.contains(odd)) {
            tracing::warn!(webhook.id = id.as_deref(), webhook.url = url.as_deref(), error = %error,
                "webhook sync: Kapso listed a webhook this build cannot read; no webhook it might be is created");
            warned += 1;
        }
        self.unreadable = now;
        warned
    }
}

/// One sync, retried with backoff until it succeeds (true) or shutdown (false).
async fn sync_until_ok(
    config: &Config,
    kapso: &KapsoClient,
    reporting: &SyncReporting,
    shutdown: &CancellationToken,
    round: &mut Round,
) -> bool {
    let options = SyncOptions {
        dry_run: false,
        prune: config.sync.prune,
    };
    let max = Duration::from_millis(config.sync.retry_max_ms);
    let mut delay = Duration::from_millis(config.sync.retry_initial_ms);
    let mut last_error: Option<String> = None;
    loop {
        let attempt = tokio::select! {
            result = sync_webhooks(config, kapso, &options) => result,
            () = shutdown.cancelled() => return false,
        };
        match attempt {
            Ok(report) => {
                round.warn_unreadable(&report);
                let changes = changes_of(&report);
                // The first run says what it found; later ones speak only when they changed
                // something (a webhook Kapso paused or deleted meanwhile).
                if !round.succeeded_once || !changes.is_empty() {
                    for line in report.summary_lines() {
                        tracing::info!("webhook sync: {line}");
                    }
                } else {
                    tracing::debug!("webhook sync: Kapso's webhooks still match the config");
                }
                if last_error.is_some() {
                    tracing::info!("webhook sync succeeded after retrying");
                }
                round.succeeded_once = true;
                publish(reporting, SyncStatus::Ok, None, &changes);
                return true;
            }
            Err(err) => {
                let message = err.to_string();
                if last_error.as_deref() == Some(message.as_str()) {
                    tracing::debug!(error = %message, retry_in_ms = delay.as_millis() as u64, "webhook sync failed again");
                } else {
                    tracing::error!(error = %message, retry_in_ms = delay.as_millis() as u64,
                        "webhook sync failed; still serving (webhooks already on Kapso keep delivering), retrying with backoff");
                }
                publish(
                    reporting,
                    SyncStatus::Retrying(message.clone()),
                    Some(message.clone()),
                    &[],
                );
                last_error = Some(message);
            }
        }
        if !sleep(&reporting.clock, delay, shutdown).await {
            return false;
        }
        delay = (delay * 2).min(max);
    }
}

/// The change action of each webhook the run changed.
fn changes_of(report: &SyncReport) -> Vec<&'static str> {
    report
        .entries
        .iter()
        .filter_map(|e| e.action.change_label())
        .collect()
}

fn publish(
    reporting: &SyncReporting,
    status: SyncStatus,
    error: Option<String>,
    changes: &[&'static str],
) {
    let now_ms = crate::clock::now_ms();
    reporting
        .metrics
        .record_sync(error.is_none(), changes, now_ms);
    reporting.state.send_modify(|state| {
        let last_success_ms = if error.is_none() {
            Some(now_ms)
        } else {
            state.last.as_ref().and_then(|l| l.last_success_ms)
        };
        let mut counted = BTreeMap::new();
        for action in changes {
            *counted.entry(*action).or_insert(0) += 1;
        }
        state.status = status;
        state.runs += 1;
        state.last = Some(LastSync {
            at_ms: now_ms,
            error,
            changes: counted,
            last_success_ms,
        });
    });
}

/// Sleeps `delay` on `clock`; false when shutdown came first.
async fn sleep(clock: &Clock, delay: Duration, shutdown: &CancellationToken) -> bool {
    let at = clock
        .now_ms()
        .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
    tokio::select! {
        () = clock.sleep_until(at) => true,
        () = shutdown.cancelled() => false,
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

    #[test]
    fn an_unreadable_webhook_is_warned_about_once_not_every_round() {
        let report = |ids: &[&str]| SyncReport {
            dry_run: false,
            entries: Vec::new(),
            foreign: 0,
            undecodable: ids
                .iter()
                .map(|id| crate::kapso::dto::UndecodableWebhook {
                    id: Some((*id).to_owned()),
                    url: None,
                    error: "missing field `events`".to_owned(),
                })
                .collect(),
        };
        let mut round = Round::default();
        assert_eq!(round.warn_unreadable(&report(&["w1"])), 1);
        assert_eq!(
            round.warn_unreadable(&report(&["w1"])),
            0,
            "the next round is quiet"
        );
        assert_eq!(
            round.warn_unreadable(&report(&["w1", "w2"])),
            1,
            "a new one is told"
        );
        assert_eq!(round.warn_unreadable(&report(&[])), 0);
        assert_eq!(
            round.warn_unreadable(&report(&["w1"])),
            1,
            "back after it was gone"
        );
    }
}
