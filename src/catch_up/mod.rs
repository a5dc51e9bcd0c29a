//! Catch-up after an outage (issue 11, docs/CATCH_UP.md): for every number-scoped webhook, read
//! Kapso's message history (`GET /{phone_number_id}/messages?direction=inbound&since=...`, the
//! Meta proxy's `listMessages`) from the number's checkpoint minus an overlap to the end, and
//! store each message switchboard never received as the `whatsapp.message.received` event its
//! webhook would have carried, flagged `backfilled`, through the inbox like any delivery: the
//! same dedupe key (`msg:{wamid}`), the same routing and the same dispatcher wake-up. Running it
//! twice stores nothing twice; a late webhook for a backfilled message is a duplicate.

pub mod payload;
pub mod serve;
pub mod silence;
mod standalone;
pub mod store;

pub use standalone::run_standalone;

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use sqlx::SqlitePool;

use crate::clock::Clock;
use crate::config::catch_up::age_ms;
use crate::config::Config;
use crate::event::Event;
use crate::inbox::{Inbox, InboxError, NewDelivery};
use crate::kapso::history::MAX_PAGE;
use crate::kapso::{KapsoClient, KapsoError, MessageQuery};
use crate::router::Router;

/// What a catch-up delivery row says in `event_header`, so `deliveries` tells catch-up apart
/// from webhook deliveries.
pub const DELIVERY_HEADER: &str = "catch-up";

#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    #[error("reading Kapso's message history failed: {0}")]
    Kapso(#[from] KapsoError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("storing the events failed: {0}")]
    Inbox(#[from] InboxError),
}

/// A number whose history is read: the first number-scoped webhook (Kapso kind, subscribed to
/// received messages) configured for it, and the status events (`whatsapp.message.sent`, ...)
/// the number's webhooks subscribe to, with the first webhook that takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub webhook: String,
    pub phone_number_id: String,
    /// Where recovered status events are filed, and which; `None` when no webhook of the
    /// number subscribes to a status event.
    pub statuses: Option<StatusTarget>,
}

/// The status events catch-up recovers for a number's outbound messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusTarget {
    pub webhook: String,
    /// The subscribed status event types, e.g. `whatsapp.message.delivered`.
    pub event_types: Vec<String>,
}

/// The numbers catch-up reads, once each, in config order.
pub fn targets(config: &Config) -> Vec<Target> {
    let mut seen = HashSet::new();
    config
        .webhooks
        .iter()
        .filter(|w| w.effective_events().iter().any(|e| e == payload::RECEIVED))
        .filter_map(|w| {
            let number = w.phone_number_id.clone()?;
            seen.insert(number.clone()).then(|| Target {
                webhook: w.name.clone(),
                statuses: config
                    .catch_up
                    .statuses
                    .then(|| status_target(config, &number))
                    .flatten(),
                phone_number_id: number,
            })
        })
        .collect()
}

/// The first webhook of `phone_number_id` subscribed to a status event, with those events.
fn status_target(config: &Config, phone_number_id: &str) -> Option<StatusTarget> {
    config
        .webhooks
        .iter()
        .filter(|w| w.phone_number_id.as_deref() == Some(phone_number_id))
        .find_map(|w| {
            let event_types: Vec<String> = w
                .effective_events()
                .into_iter()
                .filter(|e| payload::is_status_event(e))
                .collect();
            (!event_types.is_empty()).then(|| StatusTarget {
                webhook: w.name.clone(),
                event_types,
            })
        })
}

/// What one run found for one number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NumberReport {
    pub phone_number_id: String,
    pub webhook: String,
    /// Where the run started reading (Kapso's `since`, ISO 8601).
    pub since: String,
    pub pages: usize,
    /// Inbound messages listed.
    pub seen: usize,
    /// Messages stored by this run (with `--dry-run`: would be).
    pub new: usize,
    /// Status events of outbound messages stored by this run (with `--dry-run`: would be).
    pub new_statuses: usize,
    pub already_stored: usize,
    /// Messages younger than `catch_up.webhook_grace`, left to Kapso's webhook retries (a
    /// later run takes those that never arrive).
    pub recent: usize,
    /// Items without a wamid, or not inbound: not stored.
    pub skipped: usize,
    /// `None` when the run read to the end; else why it stopped.
    pub error: Option<String>,
    /// Set when the run stored messages for a webhook that has been silent for
    /// `catch_up.silence_warning`: what is likely wrong.
    pub delivery_problem: Option<String>,
}

/// What one run found, number by number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunReport {
    pub dry_run: bool,
    pub numbers: Vec<NumberReport>,
}

impl RunReport {
    /// Events stored (or, dry, that would be) over all numbers.
    pub fn new_events(&self) -> usize {
        self.numbers.iter().map(|n| n.new + n.new_statuses).sum()
    }

    /// The webhooks the run found a likely delivery problem for.
    pub fn silent_webhooks(&self) -> Vec<String> {
        self.numbers
            .iter()
            .filter(|n| n.delivery_problem.is_some())
            .map(|n| n.webhook.clone())
            .collect()
    }

    /// `ok`, or `failed` when any number's run stopped early.
    pub fn result(&self) -> &'static str {
        if self.numbers.iter().any(|n| n.error.is_some()) {
            "failed"
        } else {
            "ok"
        }
    }
}

/// How a run reads: from each number's checkpoint, or from a fixed time ago; and whether it
/// stores.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Read from this long ago (ms) instead of the checkpoint.
    pub since_ms: Option<i64>,
    /// List and count only: store nothing, move no checkpoint.
    pub dry_run: bool,
}

/// Everything a run needs.
#[derive(Clone)]
pub struct CatchUp {
    pub config: Arc<Config>,
    pub kapso: KapsoClient,
    /// Where the inbox writes (checkpoints are written here too).
    pub pool: SqlitePool,
    pub inbox: Inbox,
    pub routes: Arc<Router>,
    pub clock: Clock,
}

impl CatchUp {
    /// One run over every target number; a number whose run fails does not stop the others.
    pub async fn run(&self, options: RunOptions) -> RunReport {
        let mut report = RunReport {
            dry_run: options.dry_run,
            numbers: Vec::new(),
        };
        for target in targets(&self.config) {
            let mut number = NumberReport {
                phone_number_id: target.phone_number_id.clone(),
                webhook: target.webhook.clone(),
                ..NumberReport::default()
            };
            let outcome = self.run_number(&target, options, &mut number).await;
            if let Err(err) = outcome {
                tracing::warn!(phone_number_id = %target.phone_number_id, error = %err, "catch-up stopped before the end of Kapso's history; the checkpoint stays");
                let text = err.to_string();
                if !options.dry_run {
                    let recorded = store::record_run(
                        &self.pool,
                        &target.phone_number_id,
                        None,
                        self.clock.now_ms(),
                        &format!("failed: {text}"),
                        i64::try_from(number.new).unwrap_or(i64::MAX),
                    )
                    .await;
                    if let Err(db) = recorded {
                        tracing::warn!(error = %db, "recording the catch-up run failed");
                    }
                }
                number.error = Some(text);
            }
            if number.new > 0 && !options.dry_run {
                self.look_for_a_delivery_problem(&mut number).await;
            }
            report.numbers.push(number);
        }
        report
    }

    /// Stored messages no webhook delivered: a short outage (Kapso gave up retrying while the
    /// server was down) when the webhook has delivered since, else a likely delivery problem,
    /// logged as a warning and kept in the report.
    async fn look_for_a_delivery_problem(&self, number: &mut NumberReport) {
        let last = match silence::last_deliveries(&self.pool, &[number.webhook.as_str()]).await {
            Ok(mut last) => last.pop(),
            Err(err) => {
                tracing::warn!(error = %err, "reading the webhook's last delivery failed");
                None
            }
        };
        let threshold = self
            .config
            .catch_up
            .silence_warning
            .0
            .unwrap_or(std::time::Duration::from_secs(600));
        let problem = last.and_then(|last| {
            silence::delivery_problem(&last, number.new, self.clock.now_ms(), threshold)
        });
        match &problem {
            Some(warning) => tracing::warn!(
                webhook = %number.webhook,
                phone_number_id = %number.phone_number_id,
                found = number.new,
                "{warning}"
            ),
            None => tracing::info!(
                webhook = %number.webhook,
                phone_number_id = %number.phone_number_id,
                found = number.new,
                "catch-up stored messages no webhook delivered (the webhook delivers again: Kapso gave up retrying during an outage)"
            ),
        }
        number.delivery_problem = problem;
    }

    async fn run_number(
        &self,
        target: &Target,
        options: RunOptions,
        report: &mut NumberReport,
    ) -> Result<(), CatchUpError> {
        let now = self.clock.now_ms();
        let pnid = target.phone_number_id.as_str();
        let base = match store::checkpoint(&self.pool, pnid).await? {
            Some(checkpoint) => checkpoint,
            None => match store::newest_received(&self.pool, pnid).await? {
                Some(received) => received,
                None => now.saturating_sub(age_ms(self.config.catch_up.first_lookback)),
            },
        };
        let since_ms = match options.since_ms {
            Some(ago) => now.saturating_sub(ago),
            None => base.saturating_sub(self.config.catch_up.overlap_ms()),
        };
        report.since = crate::window::format_rfc3339(since_ms).unwrap_or_default();
        let mut newest = base;
        let messages = Pass {
            direction: "inbound",
            webhook: &target.webhook,
            to_event: &|item, index| payload::backfilled_event(pnid, item, index),
        };
        let settled_before_s = now
            .saturating_sub(age_ms(self.config.catch_up.webhook_grace))
            .div_euclid(1000);
        let window = Window {
            dry_run: options.dry_run,
            settled_before_s,
        };
        self.read_to_the_end(pnid, &messages, window, &mut newest, report)
            .await?;
        if let Some(statuses) = &target.statuses {
            let subscribed = |event: &Event| statuses.event_types.contains(&event.event_type);
            let outbound = Pass {
                direction: "outbound",
                webhook: &statuses.webhook,
                to_event: &|item, index| {
                    payload::backfilled_status(pnid, item, index).filter(subscribed)
                },
            };
            self.read_to_the_end(pnid, &outbound, window, &mut newest, report)
                .await?;
        }
        if !options.dry_run {
            store::record_run(
                &self.pool,
                pnid,
                Some(newest),
                now,
                "ok",
                i64::try_from(report.new + report.new_statuses).unwrap_or(i64::MAX),
            )
            .await?;
        }
        Ok(())
    }

    /// Reads one direction of a number's history from `report.since` to the end, storing each
    /// page's settled events; `newest` rises to the newest settled message timestamp seen.
    async fn read_to_the_end(
        &self,
        pnid: &str,
        pass: &Pass<'_>,
        window: Window,
        newest: &mut i64,
        report: &mut NumberReport,
    ) -> Result<(), CatchUpError> {
        let mut in_run: HashSet<String> = HashSet::new();
        let mut after = None;
        loop {
            let query = MessageQuery {
                direction: Some(pass.direction.to_owned()),
                since: Some(report.since.clone()),
                limit: MAX_PAGE,
                after: after.take(),
                ..MessageQuery::default()
            };
            let page = self.kapso.list_messages(pnid, &query).await?;
            report.pages += 1;
            report.seen += page.messages.len();
            let mut events: Vec<Event> = Vec::new();
            for (index, item) in page.messages.iter().enumerate() {
                if let Some(at) = item
                    .get("timestamp")
                    .and_then(crate::event::as_unix_seconds)
                {
                    if at > window.settled_before_s {
                        report.recent += 1;
                        continue;
                    }
                    *newest = (*newest).max(at.saturating_mul(1000));
                }
                let Some(mut event) = (pass.to_event)(item, index) else {
                    report.skipped += 1;
                    continue;
                };
                if !in_run.insert(event.dedupe_key.as_str().to_owned()) {
                    report.already_stored += 1;
                    continue;
                }
                event.awaits_routing = self.routes.may_match(&event.event_type);
                events.push(event);
            }
            let stored = self
                .store_page(pass.webhook, events, window.dry_run, report)
                .await?;
            match pass.direction {
                "inbound" => report.new += stored,
                _ => report.new_statuses += stored,
            }
            match page.next {
                Some(cursor) => after = Some(cursor),
                None => return Ok(()),
            }
        }
    }

    /// Stores a page's events as one delivery of `webhook` (or, dry, counts those the inbox
    /// does not hold); returns how many are (or would be) new.
    async fn store_page(
        &self,
        webhook: &str,
        events: Vec<Event>,
        dry_run: bool,
        report: &mut NumberReport,
    ) -> Result<usize, CatchUpError> {
        if events.is_empty() {
            return Ok(0);
        }
        if dry_run {
            let mut new = 0;
            for event in &events {
                if store::is_stored(&self.pool, &event.event_type, event.dedupe_key.as_str())
                    .await?
                {
                    report.already_stored += 1;
                } else {
                    new += 1;
                }
            }
            return Ok(new);
        }
        let body_bytes = events.iter().map(|e| e.stored_payload().len()).sum();
        let delivery = NewDelivery {
            webhook: webhook.to_owned(),
            received_at_ms: crate::clock::now_ms(),
            body_bytes,
            idempotency_key: None,
            event_header: Some(DELIVERY_HEADER.to_owned()),
            payload_version: Some("v2".to_owned()),
            batch: true,
            events,
            quarantine: Vec::new(),
        };
        let outcome = self.inbox.accept(delivery).await?;
        report.already_stored += outcome.duplicates;
        Ok(outcome.stored)
    }
}

/// What a run stores: nothing when dry, and only messages sent at or before
/// `settled_before_s` (Unix seconds): younger ones are still in Kapso's webhook retries.
#[derive(Debug, Clone, Copy)]
struct Window {
    dry_run: bool,
    settled_before_s: i64,
}

/// One direction of a number's history: what to ask for, where to file it, and how an item
/// becomes an event (`None`: skipped).
struct Pass<'a> {
    direction: &'static str,
    webhook: &'a str,
    to_event: &'a (dyn Fn(&serde_json::Value, usize) -> Option<Event> + Sync),
}
