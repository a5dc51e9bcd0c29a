//! The scripted scene: a customer writes to the shop through the simulated Kapso's webhook
//! sender (signed, with Kapso's headers and retries) and the real server answers. Each step
//! waits for its observable outcome (a message the sim received, a row in the inbox), bounded
//! by [`STAGE_TIMEOUT`], and says what happened at each stage.

use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context};
use serde_json::{json, Value};
use sqlx::SqlitePool;

mod outage;

use super::narrate::{self, quoted, Narrator};
use super::server::DemoServer;
use crate::inbox::store::{self as inbox_store, EventFilter};
use crate::jobs::store::{self as job_store, JobFilter, JobRow};
use crate::kapso::KapsoClient;
use crate::kapso_sim::samples::{self, MessageStatus, SampleContext};
use crate::kapso_sim::{
    DeliveryOptions, DeliveryReport, DeliveryTarget, RecordedSend, SimulatedKapso,
};

/// Longest wait for any one outcome before the demo gives up naming the stage.
pub const STAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// What the shop's agent sends the next day, outside the 24-hour window: it fails with 131047.
pub const FOLLOW_UP: &str = "Good news: your order #4471 is out for delivery today.";

/// The burst: three messages typed within a second.
const BURST: [&str; 3] = [
    "my order #4471 hasn't arrived",
    "it was due on Monday",
    "can you check where it is?",
];

pub struct Scene<'a> {
    pub sim: &'a SimulatedKapso,
    /// A separate read-only view of the server's database.
    pub db: &'a SqlitePool,
    /// The webhook as Kapso registered it (URL, secret, headers).
    pub target: DeliveryTarget,
    /// switchboard's client of the (simulated) Kapso, as `switchboard send` uses it.
    pub kapso: KapsoClient,
    pub delivery: DeliveryOptions,
    pub customer: SampleContext,
    /// Unique per run, so that wamids never collide with an earlier run in the same database.
    pub run_id: String,
    /// `[buffer] window_ms`, for the narration.
    pub window_ms: u64,
    pub say: &'a Narrator,
}

impl Scene<'_> {
    /// Plays every step in order; the outage scene stops and restarts `server`.
    pub async fn play(&self, server: &mut DemoServer) -> anyhow::Result<()> {
        self.greeting().await?;
        let last_of_burst = self.burst().await?;
        self.retry(last_of_burst).await?;
        self.outage(server).await?;
        self.failure().await
    }

    fn wamid(&self, step: &str) -> String {
        format!("wamid.DEMO_{}_{step}", self.run_id)
    }

    fn message(&self, step: &str, text: &str, offset: i64, new_conversation: bool) -> Value {
        let ctx = SampleContext {
            timestamp: self.customer.timestamp + offset,
            ..self.customer.clone()
        };
        let mut payload = samples::text_received(&ctx, &self.wamid(step), text);
        payload["is_new_conversation"] = json!(new_conversation);
        payload
    }

    /// Delivers like Kapso and insists on a 2xx.
    async fn deliver(&self, event: &str, payload: Value) -> anyhow::Result<DeliveryReport> {
        let report = self
            .sim
            .deliver(&self.target, event, vec![payload], &self.delivery)
            .await
            .context("building the delivery")?;
        if !report.succeeded() {
            let last = report.attempts.last();
            bail!(
                "stage `delivered`: the server did not accept the {event} delivery to {} after {} attempts (last: {:?} {:?})",
                self.target.url,
                report.attempts.len(),
                last.and_then(|a| a.status),
                last.and_then(|a| a.error.as_deref()),
            );
        }
        Ok(report)
    }

    /// Waits until the customer has received `n` messages in total.
    async fn replies(&self, n: usize, stage: &str) -> anyhow::Result<Vec<RecordedSend>> {
        // The sim's own wait panics; ours ends first with a message naming the stage.
        within(
            stage,
            self.sim
                .wait_for_sends(n, STAGE_TIMEOUT + Duration::from_secs(5)),
        )
        .await
    }

    async fn jobs_of(&self, route: &str) -> anyhow::Result<Vec<JobRow>> {
        let filter = JobFilter {
            route: Some(route.to_owned()),
            limit: 10,
            ..JobFilter::default()
        };
        Ok(job_store::list(self.db, &filter).await?)
    }

    async fn routed(&self, routes: &[&str]) -> anyhow::Result<Vec<JobRow>> {
        let mut jobs = Vec::new();
        for route in routes {
            let newest = self.jobs_of(route).await?.into_iter().next();
            jobs.push(newest.ok_or_else(|| anyhow!("stage `routed`: no job for route `{route}`"))?);
        }
        let shown: Vec<String> = jobs.iter().map(narrate::job).collect();
        self.say.stage("routed", shown.join("; "));
        Ok(jobs)
    }

    fn replied(&self, send: &RecordedSend) {
        self.say.stage(
            "replied",
            format!(
                "to {}: {}",
                narrate::recipient(send),
                narrate::message(send)
            ),
        );
    }

    async fn greeting(&self) -> anyhow::Result<()> {
        self.say.scene(2, "A new customer says hello");
        let report = self
            .deliver(
                samples::MESSAGE_RECEIVED,
                self.message("HI", "Hi!", 0, true),
            )
            .await?;
        self.say.stage(
            "delivered",
            format!(
                "message.received {} (new conversation) {}",
                quoted("Hi!"),
                narrate::delivery_outcome(&report)
            ),
        );
        let sends = self.replies(1, "greeting reply").await?;
        self.routed(&["greet"]).await?;
        self.replied(&sends[0]);
        Ok(())
    }

    /// Returns the last message of the burst, to be delivered again.
    async fn burst(&self) -> anyhow::Result<Value> {
        self.say
            .scene(3, "Three messages in a row, inside the buffer window");
        let mut last = Value::Null;
        for (i, text) in BURST.iter().enumerate() {
            let payload = self.message(&format!("BURST{}", i + 1), text, 10 + i as i64, false);
            let report = self
                .deliver(samples::MESSAGE_RECEIVED, payload.clone())
                .await?;
            self.say.stage(
                "delivered",
                format!(
                    "message.received {} {}",
                    quoted(text),
                    narrate::delivery_outcome(&report)
                ),
            );
            last = payload;
        }
        self.say.stage(
            "buffered",
            format!(
                "route `support` holds the conversation until {} ms pass without a new message",
                self.window_ms
            ),
        );
        let sends = self.replies(2, "burst reply").await?;
        let jobs = self.routed(&["support"]).await?;
        let events: Vec<i64> = serde_json::from_str(&jobs[0].event_ids)?;
        ensure!(
            events.len() == BURST.len(),
            "stage `buffered`: expected one job for {} messages, got {:?}",
            BURST.len(),
            events
        );
        self.say.more(format!(
            "one handler run for all {} messages (events {events:?})",
            BURST.len()
        ));
        self.replied(&sends[1]);
        Ok(last)
    }

    async fn retry(&self, payload: Value) -> anyhow::Result<()> {
        self.say
            .scene(4, "Kapso retries a delivery (our 200 got lost on the way)");
        let wamid = payload
            .pointer("/message/id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let report = self.deliver(samples::MESSAGE_RECEIVED, payload).await?;
        self.say.stage(
            "delivered",
            format!(
                "the same bytes again, X-Idempotency-Key {}… {}",
                &report.idempotency_key[..12.min(report.idempotency_key.len())],
                narrate::delivery_outcome(&report)
            ),
        );
        let filter = EventFilter {
            event_type: Some(samples::MESSAGE_RECEIVED.to_owned()),
            limit: 10_000,
            ..EventFilter::default()
        };
        let stored = inbox_store::list_events(self.db, &filter)
            .await?
            .into_iter()
            .filter(|e| e.message_id.as_deref() == Some(wamid.as_str()))
            .count();
        ensure!(
            stored == 1,
            "stage `deduplicated`: {wamid} is stored {stored} times, expected once"
        );
        self.say.stage(
            "deduplicated",
            format!("{wamid} is in the inbox once; nothing is routed or sent again"),
        );
        Ok(())
    }

    /// A day later the shop's agent writes again; WhatsApp refuses the free-form text because
    /// the customer has not written for more than 24 hours, and the routes follow up with a
    /// template.
    async fn failure(&self) -> anyhow::Result<()> {
        self.say.scene(
            6,
            "A day later, the agent's follow-up cannot be delivered (error 131047)",
        );
        let body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": self.customer.customer_phone,
            "type": "text",
            "text": { "body": FOLLOW_UP, "preview_url": false },
        });
        let sent = within(
            "agent's follow-up",
            self.kapso
                .send_message(&self.customer.phone_number_id, &body),
        )
        .await?
        .context("stage `sent`: sending the agent's follow-up through the Meta proxy")?;
        self.say.stage(
            "sent",
            format!(
                "the agent's text {} via the Meta proxy → {} (accepted; the outcome comes later, by webhook)",
                quoted(FOLLOW_UP),
                sent.message_id
            ),
        );
        let error = samples::meta_error(
            131047,
            "Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        );
        let ctx = SampleContext {
            // The next day: more than 24 hours after the customer's last message.
            timestamp: self.customer.timestamp + 25 * 3600,
            ..self.customer.clone()
        };
        let payload = samples::status_update(
            &ctx,
            &sent.message_id,
            MessageStatus::Failed,
            &body,
            &[error],
        );
        let report = self.deliver(samples::MESSAGE_FAILED, payload).await?;
        self.say.stage(
            "delivered",
            format!(
                "message.failed for {} (error 131047) {}",
                sent.message_id,
                narrate::delivery_outcome(&report)
            ),
        );
        self.say.more(
            "131047: the customer last wrote more than 24 hours ago, so WhatsApp only allows an approved template",
        );
        // The log job is enqueued before the template job (route order), so it is claimed first:
        // once the template has arrived both are running or done, and the graceful shutdown
        // lets them finish.
        let sends = self.replies(5, "template follow-up").await?;
        self.routed(&["failures", "reengage"]).await?;
        self.replied(&sends[4]);
        Ok(())
    }
}

/// Runs `wait`, failing after [`STAGE_TIMEOUT`] with a message naming `what`.
pub async fn within<T>(what: &str, wait: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(STAGE_TIMEOUT, wait)
        .await
        .map_err(|_| anyhow!("the demo waited {STAGE_TIMEOUT:?} for the {what} and gave up"))
}
