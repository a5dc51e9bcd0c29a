//! Handlers: what a job does. Each run first plans its outbound actions (reply, template,
//! message file, read receipt, or whatever the user's `http` service answers), records the plan,
//! then sends what is not yet confirmed. A retried job resumes the recorded plan, so a message
//! Kapso confirmed is never sent twice.

pub mod accepted;
pub mod compose;
pub mod conversations;
pub mod http;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::clock::now_ms;
use crate::config::HandlerConfig;
use crate::inbox::store::StoredEvent;
use crate::kapso::{KapsoClient, KapsoError, RetryHint};
use crate::pacing::{Pacer, Slot, Throttle};
use crate::router::Route;
use crate::template::RenderContext;
use crate::window::Window;
use conversations::Conversations;

/// How a handler run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth another attempt after the usual backoff.
    Retry(String),
    /// Worth another attempt, not before this delay (e.g. Kapso's `Retry-After`).
    RetryAfter(String, Duration),
    /// Cannot succeed by retrying (bad request, policy block, ...): dead-letter now.
    Fatal(String),
    /// Kapso refused a free-form message because the customer's 24-hour window is closed
    /// (131047). Final like [`Failure::Fatal`], unless the route has an `outside_window`
    /// template, which is then sent instead.
    WindowClosed(String),
    /// Not a failure of the attempt: the send waits for its business number's (or recipient's)
    /// pace. Queue again for this time (clock ms) without counting an attempt.
    Deferred(String, i64),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Retry(m)
            | Failure::RetryAfter(m, _)
            | Failure::Fatal(m)
            | Failure::WindowClosed(m)
            | Failure::Deferred(m, _) => m,
        }
    }
}

/// One thing a job does through Kapso.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send {
        phone_number_id: String,
        body: Value,
    },
    MarkRead {
        phone_number_id: String,
        message_id: String,
        typing_indicator: bool,
    },
}

impl Action {
    fn to_row(&self) -> (&'static str, &str, String) {
        match self {
            Action::Send {
                phone_number_id,
                body,
            } => ("send", phone_number_id, body.to_string()),
            Action::MarkRead {
                phone_number_id,
                message_id,
                typing_indicator,
            } => (
                "mark_read",
                phone_number_id,
                json!({ "message_id": message_id, "typing_indicator": typing_indicator })
                    .to_string(),
            ),
        }
    }

    fn from_row(row: &store::OutboundRow) -> Result<Action, Failure> {
        let body: Value = serde_json::from_str(&row.body)
            .map_err(|e| Failure::Fatal(format!("outbound #{} is not JSON: {e}", row.id)))?;
        let phone_number_id = row.phone_number_id.clone();
        match row.action.as_str() {
            "send" => Ok(Action::Send {
                phone_number_id,
                body,
            }),
            "mark_read" => Ok(Action::MarkRead {
                phone_number_id,
                message_id: body["message_id"].as_str().unwrap_or_default().to_owned(),
                typing_indicator: body["typing_indicator"].as_bool().unwrap_or(false),
            }),
            other => Err(Failure::Fatal(format!(
                "outbound #{}: unknown action {other}",
                row.id
            ))),
        }
    }
}

/// The job a handler runs for: which one, and which attempt.
#[derive(Debug, Clone, Copy)]
pub struct JobContext<'a> {
    pub id: i64,
    /// 1 for the first attempt.
    pub attempt: i64,
    /// The first attempt of a job this process created: nothing was planned for it before,
    /// so the ledger need not be read.
    pub fresh: bool,
    pub event_type: &'a str,
    pub webhook: &'a str,
}

/// A job with its route and events (oldest first).
pub struct JobInput<'a> {
    pub job: JobContext<'a>,
    pub route: &'a Route,
    pub events: &'a [StoredEvent],
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// Actions confirmed by Kapso in this run.
    pub sent: usize,
    /// Actions confirmed in an earlier run and therefore skipped.
    pub already_sent: usize,
    /// Why the job sent nothing on purpose, recorded with its outcome.
    pub not_sent: Option<&'static str>,
}

/// Recorded on a job whose send handler did not answer an old backfilled message.
pub const TOO_OLD_TO_ANSWER: &str = "not answered: backfilled by catch-up and older than catch_up.reply_max_age (stored and routed only)";

pub struct Handlers {
    kapso: Option<KapsoClient>,
    http: reqwest::Client,
    ledger: store::Ledger,
    conversations: Conversations,
    pacer: Arc<Pacer>,
    /// When this process's handlers started (Unix ms): a row planned before may have been in
    /// flight when the previous process stopped.
    started_at_ms: i64,
    /// Rows whose send in this process ended without knowing whether Kapso accepted it.
    unknown_outcome: std::sync::Mutex<std::collections::HashSet<i64>>,
    /// `catch_up.reply_max_age` (ms): older backfilled messages are not answered.
    reply_max_age_ms: Option<i64>,
}

impl Handlers {
    pub fn new(kapso: Option<KapsoClient>, ledger: store::Ledger, pacer: Arc<Pacer>) -> Handlers {
        Handlers {
            kapso,
            http: reqwest::Client::new(),
            conversations: Conversations::new(ledger.reads().clone()),
            ledger,
            pacer,
            started_at_ms: now_ms(),
            unknown_outcome: std::sync::Mutex::default(),
            reply_max_age_ms: None,
        }
    }

    /// Send handlers do not answer backfilled messages older than `max_age_ms` (by their own
    /// timestamp): `catch_up.reply_max_age`.
    pub fn with_reply_max_age(mut self, max_age_ms: Option<i64>) -> Handlers {
        self.reply_max_age_ms = max_age_ms;
        self
    }

    /// Whether every event of the job is a backfilled message older than
    /// `catch_up.reply_max_age`, and the handler would send (a `log` handler still logs).
    fn too_old_to_answer(&self, input: &JobInput<'_>) -> bool {
        let Some(max_age) = self.reply_max_age_ms else {
            return false;
        };
        let cutoff = now_ms().saturating_sub(max_age);
        !matches!(input.route.handler, HandlerConfig::Log {})
            && !input.events.is_empty()
            && input.events.iter().all(|event| {
                event.is_backfilled()
                    && event
                        .occurred_at
                        .is_some_and(|at| at.saturating_mul(1000) < cutoff)
            })
    }

    fn forget_unknown(&self, row_id: i64) {
        self.unknown_outcome
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&row_id);
    }

    /// Whether an earlier send of `row` may have reached Kapso.
    fn may_have_gone_out(&self, row: &store::OutboundRow) -> bool {
        row.action == "send"
            && (row.created_at < self.started_at_ms
                || self
                    .unknown_outcome
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .contains(&row.id))
    }

    /// Kapso's wamid for `row` if Kapso already holds the message it would send; `None` when
    /// it does not. Fails (to be retried) when Kapso's history cannot be read: never resend
    /// blindly.
    async fn already_accepted(
        &self,
        row: &store::OutboundRow,
        action: &Action,
    ) -> Result<Option<String>, Failure> {
        let (
            Some(kapso),
            Action::Send {
                phone_number_id,
                body,
            },
        ) = (self.kapso.as_ref(), action)
        else {
            return Ok(None);
        };
        let mut after = None;
        for _ in 0..accepted::MAX_PAGES {
            let page = kapso
                .list_messages(phone_number_id, &accepted::query(row.created_at, after))
                .await
                .map_err(|e| {
                    Failure::Retry(format!(
                        "whether Kapso accepted outbound #{} is unknown and its history cannot be read ({e}); not resent blindly",
                        row.id
                    ))
                })?;
            for listed in &page.messages {
                let Some(wamid) = listed.get("id").and_then(Value::as_str) else {
                    continue;
                };
                if accepted::same_message(body, listed)
                    && !self.ledger.knows_wamid(wamid).await.map_err(db_failure)?
                {
                    return Ok(Some(wamid.to_owned()));
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Runs a job to completion or to its first failure.
    pub async fn run(&self, input: &JobInput<'_>) -> Result<RunReport, Failure> {
        // A retried (or replayed) job resumes what an earlier attempt planned.
        let mut rows = if input.job.fresh {
            Vec::new()
        } else {
            self.ledger
                .planned(input.job.id)
                .await
                .map_err(db_failure)?
        };
        if rows.is_empty() {
            if self.too_old_to_answer(input) {
                return Ok(RunReport {
                    not_sent: Some(TOO_OLD_TO_ANSWER),
                    ..RunReport::default()
                });
            }
            let actions = self.plan(input).await?;
            if actions.is_empty() {
                return Ok(RunReport::default());
            }
            rows = self
                .ledger
                .record_plan(input.job.id, actions, now_ms())
                .await
                .map_err(db_failure)?;
        }
        let mut report = RunReport::default();
        // The last send of this run whose mark was queued, not awaited.
        let mut last_mark: Option<(i64, Option<String>)> = None;
        for row in &rows {
            if row.state == "sent" {
                report.already_sent += 1;
                continue;
            }
            let action = Action::from_row(row)?;
            if self.may_have_gone_out(row) {
                if let Some(wamid) = self.already_accepted(row, &action).await? {
                    tracing::info!(job.id = input.job.id, outbound.id = row.id, wamid = %wamid,
                        "Kapso had accepted this message before: marked sent, not sent again");
                    self.ledger
                        .mark_sent(row.id, Some(wamid.clone()), now_ms())
                        .map_err(db_failure)?;
                    self.forget_unknown(row.id);
                    last_mark = Some((row.id, Some(wamid)));
                    report.already_sent += 1;
                    continue;
                }
            }
            let wamid = match self.execute(input.job.id, row.id, &action).await {
                Ok(wamid) => Ok(wamid),
                Err(Failure::WindowClosed(reason)) => {
                    self.send_outside_window(input, row, &action, reason).await
                }
                Err(failure) => Err(failure),
            };
            let wamid = match wamid {
                Ok(wamid) => wamid,
                Err(failure) => {
                    // The job may run again within milliseconds (a paced send): it must read
                    // this run's sends as sent, or it would send them twice.
                    if let Some((id, wamid)) = last_mark {
                        self.ledger
                            .mark_sent_committed(id, wamid, now_ms())
                            .await
                            .map_err(db_failure)?;
                    }
                    return Err(failure);
                }
            };
            self.forget_unknown(row.id);
            self.ledger
                .mark_sent(row.id, wamid.clone(), now_ms())
                .map_err(db_failure)?;
            last_mark = Some((row.id, wamid));
            report.sent += 1;
        }
        Ok(report)
    }

    /// The conversation's window as the job's events and the stored messages tell it (the
    /// stored ones only when the route needs it: one read).
    async fn window(&self, input: &JobInput<'_>, payloads: &[Value]) -> Result<Window, Failure> {
        let window = Window::from_payloads(payloads);
        if !input.route.needs_window {
            return Ok(window);
        }
        let Some(conversation) = input
            .events
            .last()
            .and_then(|e| e.conversation_id.as_deref())
        else {
            return Ok(window);
        };
        let stored = self
            .conversations
            .last_inbound_ms(conversation)
            .await
            .map_err(read_failure)?;
        Ok(window.merge(stored))
    }

    /// True when this job answers the failure of a template this server sent recently with
    /// another template: the loop guard skips it.
    async fn loop_guarded(&self, input: &JobInput<'_>, last: &Value) -> Result<bool, Failure> {
        let guard = i64::try_from(input.route.template_loop_guard_ms).unwrap_or(i64::MAX);
        let sends_template = matches!(input.route.handler, HandlerConfig::Template(_))
            || input.route.handler.outside_window().is_some();
        if guard == 0 || !sends_template || input.job.event_type != "whatsapp.message.failed" {
            return Ok(false);
        }
        let Some(wamid) = crate::event::str_at(last, &["message", "id"]) else {
            return Ok(false);
        };
        let sent_at = self
            .conversations
            .template_sent_at(&wamid)
            .await
            .map_err(read_failure)?;
        Ok(sent_at.is_some_and(|at| now_ms().saturating_sub(at) < guard))
    }

    /// Kapso refused `action` because the window is closed: when the route has an
    /// `outside_window` template, record it in the row's place (so a retry resumes it, never
    /// the refused message) and send it; otherwise the refusal stands.
    async fn send_outside_window(
        &self,
        input: &JobInput<'_>,
        row: &store::OutboundRow,
        action: &Action,
        reason: String,
    ) -> Result<Option<String>, Failure> {
        let (
            Some(spec),
            Action::Send {
                phone_number_id, ..
            },
        ) = (input.route.handler.outside_window(), action)
        else {
            return Err(Failure::WindowClosed(reason));
        };
        let payloads: Vec<Value> = input.events.iter().map(StoredEvent::payload_json).collect();
        let last = payloads
            .last()
            .ok_or_else(|| Failure::Fatal("the job has no events".into()))?;
        let window = self.window(input, &payloads).await?;
        let ctx = render_context(input, &payloads, window, now_ms());
        let body = compose::template(spec, &ctx, last)?;
        self.ledger
            .replace_body(row.id, &body)
            .await
            .map_err(db_failure)?;
        tracing::info!(route = %input.route.name, job.id = input.job.id, template = %spec.name,
            refused = %reason, "24-hour window closed: sending the outside_window template instead");
        self.execute(
            input.job.id,
            row.id,
            &Action::Send {
                phone_number_id: phone_number_id.clone(),
                body,
            },
        )
        .await
    }

    /// Works out what the job should send. For `http` this calls the user's service.
    async fn plan(&self, input: &JobInput<'_>) -> Result<Vec<Action>, Failure> {
        let payloads: Vec<Value> = input.events.iter().map(StoredEvent::payload_json).collect();
        let (Some(last_event), Some(last)) = (input.events.last(), payloads.last()) else {
            return Err(Failure::Fatal(
                "the job's events are no longer in the inbox".into(),
            ));
        };
        if self.loop_guarded(input, last).await? {
            tracing::warn!(route = %input.route.name, job.id = input.job.id,
                "loop guard: a template this server sent failed; no template answers it (jobs.template_loop_guard_ms)");
            return Ok(Vec::new());
        }
        let now = now_ms();
        let window = self.window(input, &payloads).await?;
        let ctx = render_context(input, &payloads, window, now);
        // Known closed: the free-form message would be refused, so the template goes instead.
        let closed_template = match input.route.handler.outside_window() {
            Some(spec) if window.is_open(now) == Some(false) => {
                Some(compose::template(spec, &ctx, last)?)
            }
            _ => None,
        };
        let phone_number_id = || {
            last_event.phone_number_id.clone().ok_or_else(|| {
                Failure::Fatal("the event has no phone_number_id to send from".into())
            })
        };
        let send = |body: Value| -> Result<Vec<Action>, Failure> {
            Ok(vec![Action::Send {
                phone_number_id: phone_number_id()?,
                body,
            }])
        };
        match &input.route.handler {
            HandlerConfig::Reply { .. } | HandlerConfig::Message { .. }
                if closed_template.is_some() =>
            {
                send(closed_template.unwrap_or_default())
            }
            HandlerConfig::Reply {
                text,
                quote,
                preview_url,
                ..
            } => send(compose::reply(text, *quote, *preview_url, &ctx, last)?),
            HandlerConfig::Template(spec) => send(compose::template(spec, &ctx, last)?),
            HandlerConfig::Message { body, .. } => {
                let body = body
                    .as_ref()
                    .ok_or_else(|| Failure::Fatal("the message file was not loaded".into()))?;
                send(compose::message_file(body, &ctx, last)?)
            }
            HandlerConfig::MarkRead { typing_indicator } => Ok(vec![Action::MarkRead {
                phone_number_id: phone_number_id()?,
                message_id: compose::read_receipt_target(last)?,
                typing_indicator: *typing_indicator,
            }]),
            HandlerConfig::Http {
                url,
                timeout_ms,
                secret,
                headers,
                ..
            } => {
                let target = http::HttpTarget {
                    url,
                    timeout_ms: *timeout_ms,
                    secret: secret.as_ref(),
                    headers,
                };
                let body = http::request_body(input, &payloads);
                let messages = http::call(&self.http, &target, &body, input).await?;
                if messages.is_empty() {
                    return Ok(Vec::new());
                }
                let from = phone_number_id()?;
                let mut bodies = messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| compose::returned_message(i, m, last))
                    .collect::<Result<Vec<Value>, Failure>>()?;
                if let Some(template) = closed_template {
                    // The service's free-form messages would be refused: its templates go, and
                    // the route's template once in place of the rest.
                    let had_free_form = bodies.iter().any(|b| b["type"] != "template");
                    bodies.retain(|b| b["type"] == "template");
                    if had_free_form {
                        bodies.insert(0, template);
                    }
                }
                Ok(bodies
                    .into_iter()
                    .map(|body| Action::Send {
                        phone_number_id: from.clone(),
                        body,
                    })
                    .collect())
            }
            HandlerConfig::Log {} => {
                for (event, payload) in input.events.iter().zip(&payloads) {
                    tracing::info!(route = %input.route.name, job.id = input.job.id,
                        event.id = event.id, event.type = %event.event_type,
                        conversation = event.conversation_id.as_deref().unwrap_or("-"),
                        payload = %payload, "event");
                }
                Ok(Vec::new())
            }
        }
    }

    /// One call to Kapso for outbound row `row_id`; returns the wamid of a sent message. A
    /// message waits for its number's pace first ([`Pacer::reserve`]). A send whose outcome is
    /// unknown marks the row, so its next attempt reads Kapso's history before sending.
    async fn execute(
        &self,
        job: i64,
        row_id: i64,
        action: &Action,
    ) -> Result<Option<String>, Failure> {
        let kapso = self.kapso.as_ref().ok_or_else(|| {
            Failure::Fatal("kapso.api_key is not configured; cannot call Kapso".into())
        })?;
        match action {
            Action::Send {
                phone_number_id,
                body,
            } => {
                let recipient = compose::recipient(body);
                match self.pacer.reserve(job, phone_number_id, recipient) {
                    Slot::Wait(wait) if wait.is_zero() => {}
                    Slot::Wait(wait) => tokio::time::sleep(wait).await,
                    Slot::Defer(at) => {
                        return Err(Failure::Deferred(
                            format!("paced: {phone_number_id} sends at its allowed rate"),
                            at,
                        ))
                    }
                }
                match kapso.send_message_paced(phone_number_id, body).await {
                    Ok(sent) => {
                        self.pacer.accepted(phone_number_id, recipient);
                        Ok(Some(sent.message_id))
                    }
                    Err(err) => match Throttle::of(&err) {
                        Some(kind) => {
                            let at = self.pacer.throttled(
                                kind,
                                phone_number_id,
                                recipient,
                                err.retry_after(),
                            );
                            tracing::warn!(phone_number_id = %phone_number_id, limit = kind.label(),
                                error = %err, "send throttled; paced, not counted as an attempt");
                            Err(Failure::Deferred(format!("kapso: {err}"), at))
                        }
                        None if err.outcome_unknown() => {
                            self.unknown_outcome
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .insert(row_id);
                            Err(Failure::Retry(format!(
                                "kapso: {err}; whether Kapso accepted the message is unknown: its history is read before it is sent again"
                            )))
                        }
                        None => Err(kapso_failure(err)),
                    },
                }
            }
            Action::MarkRead {
                phone_number_id,
                message_id,
                typing_indicator,
            } => kapso
                .mark_read(phone_number_id, message_id, *typing_indicator)
                .await
                .map(|_| None)
                .map_err(kapso_failure),
        }
    }
}

/// What the job's texts and templates are filled from, judged at `now_ms`.
fn render_context<'a>(
    input: &'a JobInput<'_>,
    payloads: &'a [Value],
    window: Window,
    now_ms: i64,
) -> RenderContext<'a> {
    RenderContext {
        event_type: input.job.event_type,
        webhook: input.job.webhook,
        route: &input.route.name,
        payloads,
        window,
        now_ms,
    }
}

fn kapso_failure(err: KapsoError) -> Failure {
    let message = format!("kapso: {err}");
    if err.graph_code() == Some(131047) || err.kapso_code() == Some("window_expired") {
        return Failure::WindowClosed(message);
    }
    match err.retry_hint() {
        RetryHint::RetryAfter(after) => Failure::RetryAfter(message, after),
        RetryHint::Retry => Failure::Retry(message),
        RetryHint::DoNotRetry => Failure::Fatal(message),
    }
}

/// A read that failed: the job is tried again later.
fn read_failure(err: sqlx::Error) -> Failure {
    Failure::Retry(format!("database: {err}"))
}

fn db_failure(err: crate::write_queue::WriteError) -> Failure {
    Failure::Retry(format!("database: {err}"))
}
