//! Prometheus metrics, one registry per running server (no globals, so tests can run several).

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub webhook: String,
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub webhook: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub route: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub table: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub path: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// `public` (`server.listen`) or `ops` (`server.ops_listen`).
    pub listener: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThrottleLabels {
    pub phone_number_id: String,
    /// What the answer limited: `number` (130429), `recipient` (131056), `account` (Kapso 429).
    pub limit: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `failed`.
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// `created`, `reactivated`, `updated` or `deleted`.
    pub action: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    /// Deliveries by webhook and result (stored, duplicate, quarantined, unauthorized, ...).
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub events_stored: Family<WebhookLabels, Counter>,
    pub events_duplicate: Family<WebhookLabels, Counter>,
    pub events_quarantined: Family<WebhookLabels, Counter>,
    pub request_duration: HistogramFamily<RequestLabels>,
    /// Handler runs by route and outcome (done, retry, dead, lease_lost, error).
    pub job_runs: Family<JobLabels, Counter>,
    pub job_duration: HistogramFamily<JobLabels>,
    /// Jobs by state, refreshed on each scrape.
    pub jobs: Family<StateLabels, Gauge>,
    /// Messages waiting in conversation buffers, kept by the dispatcher (which owns them).
    pub buffered_messages: Gauge,
    /// Routes paused by an operator, kept by the job queue.
    pub paused_routes: Gauge,
    /// From the job's creation to Kapso confirming its last send.
    pub reply_latency: Histogram,
    /// How long after its due time each conversation buffer was flushed (its job committed).
    pub flush_lateness: Histogram,
    /// Rows deleted by retention, by table (counted as each batch commits).
    pub pruned_rows: Family<TableLabels, Counter>,
    /// Open HTTP connections by listener.
    pub http_connections: Family<ListenerLabels, Gauge>,
    /// Requests cut short by the header or body timeout, by listener (idle closes are routine).
    pub http_timeouts: Family<ListenerLabels, Counter>,
    /// Bytes held by request bodies being read or handled (bounded by `server.body_memory_bytes`).
    pub http_body_bytes: Gauge,
    /// Sends Kapso answered with a throttling error, by business number and limit.
    pub sends_throttled: Family<ThrottleLabels, Counter>,
    /// How long each send waited for its number's slot (in a worker or re-queued).
    pub send_pacing_wait: Histogram,
    /// Webhook sync runs (startup and periodic) by result.
    pub webhook_sync_runs: Family<ResultLabels, Counter>,
    /// Unix time of the last sync that succeeded.
    pub webhook_sync_last_success: Gauge,
    /// Webhooks the sync changed on Kapso, by action.
    pub webhook_sync_changes: Family<ActionLabels, Counter>,
    /// `catch_up_runs`, `catch_up_events`, `catch_up_last_run_timestamp_seconds`.
    pub catch_up: crate::catch_up::serve::CatchUpMetrics,
    /// Sums over every label, for the console's live overview (not exported).
    pub totals: Totals,
}

/// Counters summed over their labels (a `Family` cannot be summed), kept beside the exported
/// ones: the console samples them to draw throughput.
#[derive(Debug, Default)]
pub struct Totals {
    /// Webhook deliveries, whatever their result.
    pub deliveries: Counter,
    /// Jobs finished `done`.
    pub jobs_done: Counter,
}

/// From no wait to the minutes a large backlog on one number can mean.
fn pacing_wait_histogram() -> Histogram {
    Histogram::new([
        0.0, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
    ])
}

/// Fine steps up to 100 ms, where the buffer's promise (flushed within 50 ms) lies.
fn flush_lateness_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
        1.0, 2.5,
    ])
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("switchboard");
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let events_stored = Family::<WebhookLabels, Counter>::default();
        let events_duplicate = Family::<WebhookLabels, Counter>::default();
        let events_quarantined = Family::<WebhookLabels, Counter>::default();
        let request_duration: HistogramFamily<RequestLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "deliveries",
            "Webhook deliveries received, by webhook and result",
            deliveries.clone(),
        );
        registry.register(
            "events_stored",
            "Events stored in the inbox for the first time",
            events_stored.clone(),
        );
        registry.register(
            "events_duplicate",
            "Events that were already in the inbox (Kapso retries and re-deliveries)",
            events_duplicate.clone(),
        );
        registry.register(
            "events_quarantined",
            "Deliveries or batch elements kept raw because they could not be understood",
            events_quarantined.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method, route and status",
            request_duration.clone(),
        );
        let job_runs = Family::<JobLabels, Counter>::default();
        let job_duration: HistogramFamily<JobLabels> =
            Family::new_with_constructor(latency_histogram);
        let jobs = Family::<StateLabels, Gauge>::default();
        let buffered_messages = Gauge::default();
        let paused_routes = Gauge::default();
        let reply_latency = latency_histogram();
        registry.register(
            "job_runs",
            "Handler runs by route and outcome",
            job_runs.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Handler run time by route and outcome",
            job_duration.clone(),
        );
        registry.register(
            "jobs",
            "Unfinished and dead jobs by state (queued, running, paused: held while their route is paused, dead)",
            jobs.clone(),
        );
        registry.register(
            "buffered_messages",
            "Messages waiting in conversation buffers",
            buffered_messages.clone(),
        );
        registry.register(
            "paused_routes",
            "Routes paused by an operator (their jobs wait until resumed)",
            paused_routes.clone(),
        );
        registry.register(
            "reply_latency_seconds",
            "From a job's creation to Kapso confirming its sends",
            reply_latency.clone(),
        );
        let flush_lateness = flush_lateness_histogram();
        registry.register(
            "buffer_flush_lateness_seconds",
            "From a conversation buffer's due time to its job being committed",
            flush_lateness.clone(),
        );
        let pruned_rows = Family::<TableLabels, Counter>::default();
        registry.register(
            "pruned_rows",
            "Rows deleted by retention, by table",
            pruned_rows.clone(),
        );
        let http_connections = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "http_connections",
            "Open HTTP connections by listener (public, ops)",
            http_connections.clone(),
        );
        let http_timeouts = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "http_timeouts",
            "Requests cut short by the header or body read timeout, by listener",
            http_timeouts.clone(),
        );
        let http_body_bytes = Gauge::default();
        registry.register(
            "http_body_bytes",
            "Bytes held by request bodies being read or handled (at most server.body_memory_bytes)",
            http_body_bytes.clone(),
        );
        let sends_throttled = Family::<ThrottleLabels, Counter>::default();
        registry.register(
            "sends_throttled",
            "Sends Kapso answered with a throttling error (not counted as attempts), by number and limit",
            sends_throttled.clone(),
        );
        let send_pacing_wait = pacing_wait_histogram();
        registry.register(
            "send_pacing_wait_seconds",
            "How long sends waited for their business number's next slot",
            send_pacing_wait.clone(),
        );
        let webhook_sync_runs = Family::<ResultLabels, Counter>::default();
        registry.register(
            "webhook_sync_runs",
            "Webhook sync runs (at startup and every sync.interval) by result (ok, failed)",
            webhook_sync_runs.clone(),
        );
        let webhook_sync_last_success = Gauge::default();
        registry.register(
            "webhook_sync_last_success_timestamp_seconds",
            "Unix time of the last webhook sync that succeeded",
            webhook_sync_last_success.clone(),
        );
        let webhook_sync_changes = Family::<ActionLabels, Counter>::default();
        registry.register(
            "webhook_sync_changes",
            "Webhooks the sync changed on Kapso, by action (created, reactivated, updated, deleted)",
            webhook_sync_changes.clone(),
        );
        let catch_up = crate::catch_up::serve::CatchUpMetrics::register(&mut registry);
        Metrics {
            registry,
            webhook_sync_runs,
            webhook_sync_last_success,
            webhook_sync_changes,
            catch_up,
            totals: Totals::default(),
            sends_throttled,
            send_pacing_wait,
            http_body_bytes,
            pruned_rows,
            http_connections,
            http_timeouts,
            flush_lateness,
            job_runs,
            job_duration,
            jobs,
            buffered_messages,
            paused_routes,
            reply_latency,
            deliveries,
            events_stored,
            events_duplicate,
            events_quarantined,
            request_duration,
        }
    }

    pub fn count_delivery(&self, webhook: &str, result: &str) {
        self.totals.deliveries.inc();
        self.deliveries
            .get_or_create(&DeliveryLabels {
                webhook: webhook.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn observe_request(&self, method: &str, path: &str, status: u16, elapsed: Duration) {
        self.request_duration
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                path: path.to_owned(),
                status,
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn count_job(&self, route: &str, outcome: &str, elapsed: Duration) {
        let labels = JobLabels {
            route: route.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.job_runs.get_or_create(&labels).inc();
        if outcome == "done" {
            self.totals.jobs_done.inc();
        }
        self.job_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_reply_latency(&self, elapsed_ms: i64) {
        self.reply_latency
            .observe(elapsed_ms.max(0) as f64 / 1000.0);
    }

    pub fn observe_flush_lateness(&self, late_ms: i64) {
        self.flush_lateness.observe(late_ms.max(0) as f64 / 1000.0);
    }

    pub fn count_throttled(&self, phone_number_id: &str, limit: &str) {
        self.sends_throttled
            .get_or_create(&ThrottleLabels {
                phone_number_id: phone_number_id.to_owned(),
                limit: limit.to_owned(),
            })
            .inc();
    }

    pub fn observe_pacing_wait(&self, wait: Duration) {
        self.send_pacing_wait.observe(wait.as_secs_f64());
    }

    pub fn count_pruned(&self, table: &str, rows: u64) {
        if rows > 0 {
            self.pruned_rows
                .get_or_create(&TableLabels {
                    table: table.to_owned(),
                })
                .inc_by(rows);
        }
    }

    /// One webhook sync finished at `now_ms`: `changes` holds the action of each webhook it
    /// changed (empty for a failed or steady-state run).
    pub fn record_sync(&self, ok: bool, changes: &[&str], now_ms: i64) {
        let result = if ok { "ok" } else { "failed" };
        self.webhook_sync_runs
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
        if ok {
            self.webhook_sync_last_success.set(now_ms.div_euclid(1000));
        }
        for action in changes {
            self.webhook_sync_changes
                .get_or_create(&ActionLabels {
                    action: (*action).to_owned(),
                })
                .inc();
        }
    }

    /// The `jobs` gauge of `state` (`queued`, `running`, `dead`), kept by the job queue.
    pub fn jobs_in(&self, state: &str) -> i64 {
        self.jobs
            .get(&StateLabels {
                state: state.to_owned(),
            })
            .map_or(0, |gauge| gauge.get())
    }

    /// The registry in the Prometheus/OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
