//! When each managed webhook last delivered, for spotting a webhook that went silent while
//! Kapso still has traffic for it (a later slice logs "webhook silent for N minutes while
//! catch-up finds messages"). Read from the `deliveries` log (one row per authenticated HTTP
//! delivery, kept for `retention.deliveries`), not from `events`: events recovered from Kapso's
//! history by catch-up did not come through the webhook and must not count as a delivery.

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
            "SELECT received_at FROM deliveries WHERE webhook = ?1 ORDER BY id DESC LIMIT 1",
        )
        .bind(webhook)
        .fetch_optional(pool)
        .await?;
        out.push(LastDelivery {
            webhook: (*webhook).to_owned(),
            received_at_ms,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageConfig;
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
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = StorageConfig {
            url: format!("sqlite://{}", dir.path().join("switchboard.db").display()),
            ..StorageConfig::default()
        };
        let pool = db::open_for_server(&storage).await.expect("open");
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
}
