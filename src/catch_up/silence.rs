//! When each webhook last delivered, for telling a delivery problem from a short outage: a run
//! that recovers messages for a webhook that has delivered nothing for
//! `catch_up.silence_warning` means Kapso cannot reach it, paused it, or sends its events
//! elsewhere, and catch-up says so. Read from the `deliveries` log (one row per authenticated
//! HTTP delivery, kept for `retention.deliveries`), leaving out catch-up's own rows: events
//! recovered from Kapso's history did not come through the webhook.

use std::time::Duration;

use sqlx::SqlitePool;

/// The last delivery of one `[[webhooks]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastDelivery {
    pub webhook: String,
    /// Unix ms of its newest delivery still in the log; `None` when there is none.
    pub received_at_ms: Option<i64>,
}

impl LastDelivery {
    /// How long the webhook has been silent at `now_ms`; `None` when it never delivered (within
    /// the log's retention).
    pub fn silent_for(&self, now_ms: i64) -> Option<Duration> {
        let at = self.received_at_ms?;
        Some(Duration::from_millis(
            u64::try_from(now_ms.saturating_sub(at)).unwrap_or(0),
        ))
    }
}

/// The newest delivery of each of `webhooks` (in that order). Walks each webhook's rows from
/// the newest (by id, the order they were stored in), so a busy webhook costs one row.
pub async fn last_deliveries(
    pool: &SqlitePool,
    webhooks: &[&str],
) -> Result<Vec<LastDelivery>, sqlx::Error> {
    let mut out = Vec::with_capacity(webhooks.len());
    for webhook in webhooks {
        let received_at_ms: Option<i64> = sqlx::query_scalar(
            "SELECT received_at FROM deliveries
             WHERE webhook = ?1 AND event_header IS NOT ?2
             ORDER BY id DESC LIMIT 1",
        )
        .bind(webhook)
        .bind(super::DELIVERY_HEADER)
        .fetch_optional(pool)
        .await?;
        out.push(LastDelivery {
            webhook: (*webhook).to_owned(),
            received_at_ms,
        });
    }
    Ok(out)
}

/// What to log when a run stored `found` messages for `last`'s webhook at `now_ms`: a warning
/// naming the likely delivery problem when the webhook has been silent for at least
/// `threshold` (or never delivered within the log), else `None` (a short outage: Kapso gave up
/// retrying while the server was down, and the webhook has delivered since).
pub fn delivery_problem(
    last: &LastDelivery,
    found: usize,
    now_ms: i64,
    threshold: Duration,
) -> Option<String> {
    let silent = match last.silent_for(now_ms) {
        None => "has delivered nothing (within retention.deliveries)".to_owned(),
        Some(silent) if silent >= threshold => {
            format!(
                "has delivered nothing for {} minutes",
                silent.as_secs() / 60
            )
        }
        Some(_) => return None,
    };
    Some(format!(
        "webhook `{}` {silent} while catch-up found {found} message(s) Kapso holds for it: a likely delivery problem (Kapso paused the webhook, cannot reach the server's URL, or the signature is refused); check `switchboard webhooks list` and the 401 count in /metrics",
        last.webhook
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db;

    async fn delivery(pool: &SqlitePool, webhook: &str, received_at: i64) {
        sqlx::query(
            "INSERT INTO deliveries (webhook, received_at, body_bytes, batch, result)
             VALUES (?1, ?2, 10, 0, 'stored')",
        )
        .bind(webhook)
        .bind(received_at)
        .execute(pool)
        .await
        .expect("insert delivery");
    }

    #[tokio::test]
    async fn each_webhook_reports_its_newest_delivery_and_how_long_it_has_been_silent() {
        let (_dir, pool) = db::temp_database().await;
        delivery(&pool, "support", 1_000).await;
        delivery(&pool, "sales", 2_000).await;
        delivery(&pool, "support", 5_000).await;

        let last = last_deliveries(&pool, &["support", "sales", "quiet"])
            .await
            .expect("read");

        let at: Vec<Option<i64>> = last.iter().map(|l| l.received_at_ms).collect();
        assert_eq!(at, [Some(5_000), Some(2_000), None]);
        assert_eq!(last[1].silent_for(602_000), Some(Duration::from_secs(600)));
        assert_eq!(last[2].silent_for(602_000), None);
    }

    #[tokio::test]
    async fn catch_ups_own_rows_are_not_deliveries_of_the_webhook() {
        let (_dir, pool) = db::temp_database().await;
        delivery(&pool, "support", 1_000).await;
        sqlx::query(
            "INSERT INTO deliveries (webhook, received_at, body_bytes, batch, result, event_header)
             VALUES ('support', 9000, 10, 1, 'stored', ?1)",
        )
        .bind(super::super::DELIVERY_HEADER)
        .execute(&pool)
        .await
        .expect("insert catch-up row");

        let last = last_deliveries(&pool, &["support"]).await.expect("read");
        assert_eq!(last[0].received_at_ms, Some(1_000));
    }

    #[test]
    fn only_a_webhook_silent_past_the_threshold_is_a_delivery_problem() {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let last = |at: Option<i64>| LastDelivery {
            webhook: "support".to_owned(),
            received_at_ms: at,
        };
        let now = 60 * 60_000;
        // Delivered two minutes ago: Kapso gave up during a short outage, the webhook works.
        assert_eq!(
            delivery_problem(&last(Some(now - 120_000)), 3, now, minutes(10)),
            None
        );
        let warning = delivery_problem(&last(Some(0)), 3, now, minutes(10)).expect("silent");
        assert!(
            warning.contains("`support` has delivered nothing for 60 minutes"),
            "{warning}"
        );
        assert!(warning.contains("found 3 message(s)"), "{warning}");
        let never = delivery_problem(&last(None), 1, now, minutes(10)).expect("never");
        assert!(never.contains("has delivered nothing (within"), "{never}");
    }
}
