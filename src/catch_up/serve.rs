//! Catch-up inside `serve`: once the server listens, then every `catch_up.interval`, in the
//! background. Each run is counted in the metrics and shown in `/readyz` (never making the
//! server unready).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{CatchUp, RunOptions};

/// The last run, as `/readyz` shows it under `catch_up`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CatchUpStatus {
    /// `off` (no API key, no number-scoped webhook, or `on_startup = false`), `pending` (not run
    /// yet) or the last run's result (`ok`, `failed`).
    pub state: String,
    /// When the last run ended (RFC 3339).
    pub last_run_at: Option<String>,
    /// Events the last run stored.
    pub found: usize,
    /// Webhooks the last run found silent for `catch_up.silence_warning` while Kapso held
    /// messages for them: a likely delivery problem (see the log).
    pub silent_webhooks: Vec<String>,
}

impl CatchUpStatus {
    pub fn off() -> CatchUpStatus {
        CatchUpStatus {
            state: "off".to_owned(),
            ..CatchUpStatus::default()
        }
    }

    pub fn pending() -> CatchUpStatus {
        CatchUpStatus {
            state: "pending".to_owned(),
            ..CatchUpStatus::default()
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// `switchboard_catch_up_*`.
#[derive(Debug, Clone, Default)]
pub struct CatchUpMetrics {
    pub runs: Family<ResultLabels, Counter>,
    pub events: Counter,
    pub last_run: Gauge,
    pub silent_webhooks: Gauge,
}

impl CatchUpMetrics {
    pub fn register(registry: &mut Registry) -> CatchUpMetrics {
        let metrics = CatchUpMetrics::default();
        registry.register(
            "catch_up_runs",
            "Catch-up runs (reading Kapso's history after an outage), by result (ok, failed)",
            metrics.runs.clone(),
        );
        registry.register(
            "catch_up_events",
            "Events catch-up stored that no webhook had delivered (flagged backfilled)",
            metrics.events.clone(),
        );
        registry.register(
            "catch_up_last_run_timestamp_seconds",
            "When the last catch-up run ended (Unix seconds)",
            metrics.last_run.clone(),
        );
        registry.register(
            "catch_up_silent_webhooks",
            "Webhooks the last catch-up run found silent for catch_up.silence_warning while Kapso held messages for them (a likely delivery problem)",
            metrics.silent_webhooks.clone(),
        );
        metrics
    }
}

/// Runs catch-up now and then every `catch_up.interval` until `shutdown`.
pub async fn run_periodically(
    catch_up: CatchUp,
    metrics: CatchUpMetrics,
    status: watch::Sender<CatchUpStatus>,
    shutdown: CancellationToken,
) {
    let interval = catch_up.config.catch_up.interval.0;
    loop {
        let run = catch_up.run(RunOptions::default());
        let report = tokio::select! {
            report = run => report,
            () = shutdown.cancelled() => return,
        };
        let now_ms = crate::clock::now_ms();
        let found = report.new_events();
        metrics
            .runs
            .get_or_create(&ResultLabels {
                result: report.result().to_owned(),
            })
            .inc();
        metrics.events.inc_by(u64::try_from(found).unwrap_or(0));
        metrics.last_run.set(now_ms / 1000);
        let silent_webhooks = report.silent_webhooks();
        metrics
            .silent_webhooks
            .set(i64::try_from(silent_webhooks.len()).unwrap_or(i64::MAX));
        tracing::info!(
            result = report.result(),
            found,
            numbers = report.numbers.len(),
            "catch-up from Kapso's message history done"
        );
        status.send_replace(CatchUpStatus {
            state: report.result().to_owned(),
            last_run_at: crate::window::format_rfc3339(now_ms),
            found,
            silent_webhooks,
        });
        let Some(every) = interval else { return };
        tokio::select! {
            () = tokio::time::sleep(every.max(Duration::from_secs(1))) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Whether `serve` catches up: `[catch_up] on_startup`, a Kapso API key and a number to read.
pub fn runs_in_serve(config: &crate::config::Config) -> bool {
    config.catch_up.on_startup
        && config.kapso.api_key.is_some()
        && !super::targets(config).is_empty()
}

/// The status `/readyz` starts from.
pub fn initial_status(config: &crate::config::Config) -> CatchUpStatus {
    if runs_in_serve(config) {
        CatchUpStatus::pending()
    } else {
        CatchUpStatus::off()
    }
}
