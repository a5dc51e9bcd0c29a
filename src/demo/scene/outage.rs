//! Scene 5: the server is down for five minutes. Kapso tries each of the customer's messages on
//! its real schedule (10 s, 40 s, 90 s, played on a fast-forwarded clock) and gives up; when the
//! server is back, its startup catch-up reads Kapso's message history and recovers them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};

use super::{Scene, STAGE_TIMEOUT};
use crate::clock::{Clock, ManualTime};
use crate::demo::narrate::quoted;
use crate::demo::server::DemoServer;
use crate::event::FLAG_BACKFILLED;
use crate::kapso_sim::deliver::RetryHook;
use crate::kapso_sim::samples;
use crate::kapso_sim::DeliveryOptions;

/// What the customer writes while the server is down.
const WHILE_DOWN: [&str; 3] = [
    "hello? is anyone there?",
    "I still need help with order #4471",
    "please call me back",
];

/// How long the outage lasts, as told.
const DOWN_FOR: Duration = Duration::from_secs(5 * 60);

impl Scene<'_> {
    pub(super) async fn outage(&self, server: &mut DemoServer) -> anyhow::Result<()> {
        self.say.scene(
            5,
            "switchboard is down for 5 minutes; Kapso gives up on the customer's messages",
        );
        server.stop().await?;
        self.say.stage(
            "stopped",
            format!(
                "the server is stopped (a deploy gone wrong): nothing answers at {}",
                server.url()
            ),
        );
        let kapso_time = ManualTime::starting_at(crate::clock::now_ms());
        let delivery = DeliveryOptions {
            clock: Clock::Manual(kapso_time.clone()),
            on_retry: Some(RetryHook(Arc::new({
                let kapso_time = kapso_time.clone();
                move |_, _, wait| kapso_time.advance(wait)
            }))),
            response_timeout: Duration::from_secs(5),
            ..DeliveryOptions::default()
        };
        let mut wamids = Vec::new();
        for (i, text) in WHILE_DOWN.iter().enumerate() {
            let step = format!("DOWN{}", i + 1);
            let offset = 300 + 20 * i64::try_from(i).unwrap_or(0);
            let payload = self.message(&step, text, offset, false);
            wamids.push(self.wamid(&step));
            let started = kapso_time.now_ms();
            let report = self
                .sim
                .deliver(
                    &self.target,
                    samples::MESSAGE_RECEIVED,
                    vec![payload],
                    &delivery,
                )
                .await
                .context("building the delivery")?;
            ensure!(
                !report.succeeded(),
                "stage `gave up`: the stopped server accepted a delivery"
            );
            let span = Duration::from_millis(
                u64::try_from(kapso_time.now_ms() - started).unwrap_or_default(),
            );
            self.say.stage(
                "gave up",
                format!(
                    "message.received {}: {} attempts over {} s (Kapso retries after 10 s, 40 s and 90 s; clock fast-forwarded), then Kapso gave up",
                    quoted(text),
                    report.attempts.len(),
                    span.as_secs()
                ),
            );
        }

        server.start_again().await?;
        self.say.stage(
            "restarted",
            format!(
                "{} minutes later the server is back; on start it reads Kapso's message history since its last checkpoint",
                DOWN_FOR.as_secs() / 60
            ),
        );
        let recovered = self.backfilled(&wamids).await?;
        self.say.stage(
            "caught up",
            format!(
                "recovered {recovered} messages Kapso had given up on (flagged backfilled, stored under the dedupe keys their webhooks would have had)"
            ),
        );
        let sends = self.replies(3, "reply to the recovered messages").await?;
        self.routed(&["support"]).await?;
        self.replied(&sends[2]);
        self.say.more(format!(
            "switchboard was down for {} minutes; Kapso gave up; catch-up recovered {recovered} messages",
            DOWN_FOR.as_secs() / 60
        ));
        Ok(())
    }

    /// How many of `wamids` are stored flagged backfilled; insists on all of them.
    async fn backfilled(&self, wamids: &[String]) -> anyhow::Result<usize> {
        // The startup catch-up has run when the server is back (see `DemoServer`).
        let mut stored = 0;
        for wamid in wamids {
            let flags: Option<Option<String>> = sqlx::query_scalar(
                "SELECT flags FROM events WHERE message_id = ?1 AND event_type = ?2",
            )
            .bind(wamid)
            .bind(samples::MESSAGE_RECEIVED)
            .fetch_optional(self.db)
            .await?;
            let flagged = flags
                .flatten()
                .is_some_and(|f| f.split(',').any(|f| f == FLAG_BACKFILLED));
            ensure!(
                flagged,
                "stage `caught up`: {wamid} was not recovered from Kapso's history within {STAGE_TIMEOUT:?}"
            );
            stored += 1;
        }
        Ok(stored)
    }
}
