//! The overview's live figures, read without scanning a table: throughput from the server's own
//! counters, sampled every [`SAMPLE_EVERY`] into a small ring ([`Throughput`]); jobs by state
//! from the gauges the job queue keeps; the webhook sync and catch-up from the state `/readyz`
//! shows; event types among the newest events only (a bounded read through the primary key).

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sqlx::SqlitePool;
use tokio::sync::watch;

use super::html::escape;
use crate::catch_up::serve::CatchUpStatus;
use crate::metrics::Metrics;
use crate::sync::SyncState;

/// How often the counters are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Samples kept: five minutes of them.
pub const SAMPLES: usize = 61;
/// The chart's drawing area (SVG user units).
const CHART_WIDTH: f64 = 300.0;
const CHART_HEIGHT: f64 = 80.0;

/// Where the overview reads the server's state.
#[derive(Clone)]
pub struct LiveSources {
    pub metrics: Arc<Metrics>,
    /// The webhook sync's state (`/readyz`'s `webhook_sync`, `webhook_sync_last`).
    pub webhook_sync: watch::Receiver<SyncState>,
    /// The last catch-up run (`/readyz`'s `catch_up`).
    pub catch_up: watch::Receiver<CatchUpStatus>,
}

/// Counter values at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    at_ms: i64,
    deliveries: u64,
    jobs_done: u64,
}

/// Per-second rates over one interval between samples, ending at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    pub at_ms: i64,
    pub deliveries: f64,
    pub jobs_done: f64,
}

/// The last [`SAMPLES`] samples of the delivery and job counters.
#[derive(Clone, Default)]
pub struct Throughput {
    samples: Arc<Mutex<VecDeque<Sample>>>,
}

impl Throughput {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Sample>> {
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the counters at `at_ms`, dropping the oldest sample past [`SAMPLES`].
    pub fn record(&self, at_ms: i64, deliveries: u64, jobs_done: u64) {
        let mut samples = self.lock();
        if samples.len() >= SAMPLES {
            samples.pop_front();
        }
        samples.push_back(Sample {
            at_ms,
            deliveries,
            jobs_done,
        });
    }

    /// The rate over each interval between consecutive samples, oldest first.
    pub fn rates(&self) -> Vec<Rate> {
        let samples = self.lock();
        samples
            .iter()
            .zip(samples.iter().skip(1))
            .filter_map(|(before, after)| {
                let seconds = (after.at_ms - before.at_ms) as f64 / 1000.0;
                (seconds > 0.0).then(|| Rate {
                    at_ms: after.at_ms,
                    deliveries: after.deliveries.saturating_sub(before.deliveries) as f64 / seconds,
                    jobs_done: after.jobs_done.saturating_sub(before.jobs_done) as f64 / seconds,
                })
            })
            .collect()
    }

    /// Samples `metrics` every [`SAMPLE_EVERY`] until every handle of this ring is dropped (the
    /// console's router goes with the server).
    pub fn spawn_sampler(&self, metrics: Arc<Metrics>) {
        let ring: Weak<Mutex<VecDeque<Sample>>> = Arc::downgrade(&self.samples);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SAMPLE_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(samples) = ring.upgrade() else {
                    return;
                };
                Throughput { samples }.record(
                    crate::clock::now_ms(),
                    metrics.totals.deliveries.get(),
                    metrics.totals.jobs_done.get(),
                );
            }
        });
    }
}

/// The overview's figures, as the page shows them and `/admin/overview.json` returns them.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// Over the last sampled interval (0 before the second sample).
    pub deliveries_per_s: f64,
    pub jobs_done_per_s: f64,
    /// Since the server started.
    pub deliveries_total: u64,
    pub jobs_done_total: u64,
    /// `[state, jobs]`: queued, running and dead now; done since the server started.
    pub jobs: Vec<(String, i64)>,
    pub dead_jobs: i64,
    /// `[type, events]` among the newest [`crate::inbox::timeline::RECENT_TYPES_SCANNED`].
    pub events_by_type: Vec<(String, i64)>,
    /// As `/readyz` shows them.
    pub webhook_sync: String,
    pub webhook_sync_last: Value,
    pub catch_up: CatchUpStatus,
    /// One line each, for people.
    pub webhook_sync_text: String,
    pub catch_up_text: String,
    pub chart: Chart,
}

/// The throughput chart's lines as SVG `points`, scaled to `max` per second.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Chart {
    pub deliveries: String,
    pub jobs_done: String,
    pub max: f64,
}

impl Overview {
    pub async fn read(
        sources: &LiveSources,
        throughput: &Throughput,
        reads: &SqlitePool,
    ) -> Result<Overview, sqlx::Error> {
        let events_by_type = crate::inbox::timeline::types_of_recent(reads).await?;
        let metrics = &sources.metrics;
        let rates = throughput.rates();
        let latest = rates.last().copied();
        let dead_jobs = metrics.jobs_in("dead");
        let deliveries_total = metrics.totals.deliveries.get();
        let jobs_done_total = metrics.totals.jobs_done.get();
        let (webhook_sync, webhook_sync_last) = {
            let sync = sources.webhook_sync.borrow();
            (sync.status.to_string(), sync.last_json())
        };
        let catch_up = sources.catch_up.borrow().clone();
        Ok(Overview {
            deliveries_per_s: latest.map_or(0.0, |r| r.deliveries),
            jobs_done_per_s: latest.map_or(0.0, |r| r.jobs_done),
            deliveries_total,
            jobs_done_total,
            jobs: vec![
                ("queued".to_owned(), metrics.jobs_in("queued")),
                ("running".to_owned(), metrics.jobs_in("running")),
                ("dead".to_owned(), dead_jobs),
                (
                    "done".to_owned(),
                    i64::try_from(jobs_done_total).unwrap_or(i64::MAX),
                ),
            ],
            dead_jobs,
            events_by_type,
            webhook_sync_text: sync_text(&webhook_sync, &webhook_sync_last),
            catch_up_text: catch_up_text(&catch_up),
            webhook_sync,
            webhook_sync_last,
            catch_up,
            chart: chart(&rates),
        })
    }

    /// The overview's live part as HTML (every value escaped); the elements marked `data-live`
    /// are the ones `console.js` refreshes.
    pub fn html(&self) -> String {
        let mut html = String::new();
        let _ = write!(
            html,
            "<section class=\"live\" id=\"live\" data-source=\"/admin/overview.json\">\
             <div class=\"figures\">\
             <p><span class=\"figure\" data-live=\"deliveries_per_s\">{:.1}</span> deliveries/s \
             (<span data-live=\"deliveries_total\">{}</span> since start)</p>\
             <p><span class=\"figure\" data-live=\"jobs_done_per_s\">{:.1}</span> jobs done/s \
             (<span data-live=\"jobs_done_total\">{}</span> since start)</p>\
             <p><a href=\"/admin/jobs?state=dead\"><span class=\"figure\" data-live=\"dead_jobs\">{}</span> dead jobs</a></p>\
             </div>",
            self.deliveries_per_s,
            self.deliveries_total,
            self.jobs_done_per_s,
            self.jobs_done_total,
            self.dead_jobs,
        );
        let _ = write!(
            html,
            "<figure class=\"chart\"><svg id=\"throughput\" viewBox=\"0 0 {CHART_WIDTH} {CHART_HEIGHT}\" \
             role=\"img\" aria-label=\"Deliveries and jobs done per second, last five minutes\">\
             <rect x=\"0\" y=\"0\" width=\"{CHART_WIDTH}\" height=\"{CHART_HEIGHT}\" fill=\"#fff\"/>\
             <polyline class=\"deliveries\" data-live-points=\"deliveries\" points=\"{}\" fill=\"none\" stroke=\"#2271b1\" stroke-width=\"1.5\"/>\
             <polyline class=\"jobs\" data-live-points=\"jobs_done\" points=\"{}\" fill=\"none\" stroke=\"#00a32a\" stroke-width=\"1.5\"/>\
             </svg><figcaption><span class=\"key deliveries\">deliveries/s</span> \
             <span class=\"key jobs\">jobs done/s</span>, last five minutes, \
             top = <span data-live=\"chart.max\">{}</span>/s</figcaption></figure>",
            escape(&self.chart.deliveries),
            escape(&self.chart.jobs_done),
            self.chart.max,
        );
        let _ = write!(
            html,
            "<h2>Webhook sync and catch-up</h2><dl>\
             <dt>Webhook sync</dt><dd data-live=\"webhook_sync_text\">{}</dd>\
             <dt>Catch-up</dt><dd data-live=\"catch_up_text\">{}</dd></dl>",
            escape(&self.webhook_sync_text),
            escape(&self.catch_up_text),
        );
        let jobs: Vec<Vec<String>> = self
            .jobs
            .iter()
            .map(|(state, n)| {
                vec![
                    format!("<a href=\"/admin/jobs?state={0}\">{0}</a>", escape(state)),
                    n.to_string(),
                ]
            })
            .collect();
        let types: Vec<Vec<String>> = self
            .events_by_type
            .iter()
            .map(|(event_type, n)| vec![escape(event_type), n.to_string()])
            .collect();
        let _ = write!(
            html,
            "<div class=\"columns\"><div><h2>Jobs by state</h2>{}</div>\
             <div><h2>Events by type</h2><p class=\"hint\">Among the newest {} events.</p>{}</div></div>\
             </section>",
            live_table("jobs", &["State", "Jobs"], &jobs),
            crate::inbox::timeline::RECENT_TYPES_SCANNED,
            live_table("events_by_type", &["Type", "Events"], &types),
        );
        html
    }
}

/// A table whose body `console.js` rebuilds from the JSON's `key` (pairs of label and count).
fn live_table(key: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    super::html::table(headers, rows).replacen(
        "<tbody>",
        &format!("<tbody data-live-rows=\"{}\">", escape(key)),
        1,
    )
}

/// `/readyz`'s sync state as one line.
fn sync_text(status: &str, last: &Value) -> String {
    let mut text = status.to_owned();
    if let Some(at) = last.get("at").and_then(Value::as_str) {
        let result = last.get("result").and_then(Value::as_str).unwrap_or("?");
        let _ = write!(text, "; last run {at}: {result}");
        if let Some(error) = last.get("error").and_then(Value::as_str) {
            let _ = write!(text, " ({error})");
        }
    }
    if let Some(at) = last.get("last_success_at").and_then(Value::as_str) {
        let _ = write!(text, "; last success {at}");
    }
    text
}

/// `/readyz`'s catch-up state as one line.
fn catch_up_text(status: &CatchUpStatus) -> String {
    let mut text = status.state.clone();
    if let Some(at) = &status.last_run_at {
        let _ = write!(text, "; last run {at}, {} messages recovered", status.found);
    }
    if !status.silent_webhooks.is_empty() {
        let _ = write!(
            text,
            "; silent webhooks (Kapso held messages they never delivered): {}",
            status.silent_webhooks.join(", ")
        );
    }
    text
}

/// The chart's lines: the newest rate at the right edge, one step per sample interval, scaled
/// so the highest rate (at least 1/s) touches the top.
fn chart(rates: &[Rate]) -> Chart {
    let max = rates
        .iter()
        .map(|r| r.deliveries.max(r.jobs_done))
        .fold(1.0_f64, f64::max)
        .ceil();
    let step = CHART_WIDTH / (SAMPLES - 1) as f64;
    let offset = (SAMPLES - 1).saturating_sub(rates.len()) as f64;
    let line = |value: fn(&Rate) -> f64| {
        rates
            .iter()
            .enumerate()
            .map(|(i, rate)| {
                let x = (offset + i as f64 + 1.0) * step;
                let y = CHART_HEIGHT - 2.0 - value(rate) / max * (CHART_HEIGHT - 4.0);
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    Chart {
        deliveries: line(|r| r.deliveries),
        jobs_done: line(|r| r.jobs_done),
        max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_second_between_samples_and_the_ring_keeps_five_minutes() {
        let ring = Throughput::default();
        ring.record(0, 10, 0);
        ring.record(5_000, 60, 5);
        ring.record(10_000, 60, 5);
        let rates = ring.rates();
        assert_eq!(rates.len(), 2);
        assert_eq!(
            rates[0],
            Rate {
                at_ms: 5_000,
                deliveries: 10.0,
                jobs_done: 1.0
            }
        );
        assert_eq!(rates[1].deliveries, 0.0);
        for i in 3..100 {
            ring.record(i * 5_000, 60, 5);
        }
        assert_eq!(ring.rates().len(), SAMPLES - 1);
    }

    #[test]
    fn the_chart_puts_the_newest_rate_at_the_right_and_the_highest_at_the_top() {
        let rates = [
            Rate {
                at_ms: 1,
                deliveries: 4.0,
                jobs_done: 0.0,
            },
            Rate {
                at_ms: 2,
                deliveries: 8.0,
                jobs_done: 2.0,
            },
        ];
        let chart = chart(&rates);
        assert_eq!(chart.max, 8.0);
        assert_eq!(chart.deliveries, "295.0,40.0 300.0,2.0");
        assert_eq!(chart.jobs_done, "295.0,78.0 300.0,59.0");
        assert_eq!(super::chart(&[]).deliveries, "");
    }

    #[test]
    fn catch_up_names_silent_webhooks() {
        let status = CatchUpStatus {
            state: "ok".into(),
            last_run_at: Some("2026-01-01T00:00:00Z".into()),
            found: 3,
            silent_webhooks: vec!["support".into()],
        };
        let text = catch_up_text(&status);
        assert!(text.starts_with("ok; last run 2026-01-01T00:00:00Z, 3 messages recovered"));
        assert!(text.contains("silent webhooks"), "{text}");
        assert!(text.ends_with("support"), "{text}");
    }
}
