//! Everything that can go wrong receiving a delivery, and the one place that turns it into an
//! HTTP status. Internal failures become a bare 500 (Kapso will retry); details go to the log.
//! A full database (disk full, or `storage.max_size_mb` reached) is not a bug of this delivery:
//! it gets 503 so Kapso retries later, and is logged by [`crate::write_health`], which says it
//! once per interval rather than once per delivery.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::body::BodyError;
use super::signature::SignatureError;
use crate::inbox::InboxError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no webhook with this name is configured")]
    UnknownWebhook,
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("signature rejected: {0}")]
    Unauthorized(#[from] SignatureError),
    #[error(transparent)]
    Inbox(InboxError),
    #[error("storage is full; retry later")]
    StorageFull,
    #[error("not committed within the request deadline ({deadline_ms} ms); retry later")]
    DeadlineExceeded { deadline_ms: u64 },
}

impl IngestError {
    /// The `result` label this failure is counted under in `switchboard_deliveries_total`.
    pub fn result_label(&self) -> &'static str {
        match self {
            IngestError::UnknownWebhook => "unknown_webhook",
            IngestError::Body(BodyError::TooLarge { .. }) => "too_large",
            IngestError::Body(BodyError::BudgetExhausted { .. }) => "busy",
            IngestError::Body(BodyError::TooSlow) => "too_slow",
            IngestError::Body(BodyError::Unreadable) => "unreadable",
            IngestError::Unauthorized(_) => "unauthorized",
            IngestError::Inbox(_) => "error",
            IngestError::StorageFull => "storage_full",
            IngestError::DeadlineExceeded { .. } => "deadline",
        }
    }

    pub fn log(&self) {
        match self {
            IngestError::Inbox(err) => tracing::error!(error = %err, "delivery not stored"),
            // The writer's failure is logged by `WriteHealth`, at most once per interval.
            IngestError::StorageFull => tracing::debug!(reason = %self, "delivery answered 503"),
            IngestError::Unauthorized(err) => tracing::warn!(reason = %err, "delivery refused"),
            IngestError::DeadlineExceeded { .. } => {
                tracing::warn!(reason = %self, "delivery answered 503");
            }
            other => tracing::info!(reason = %other, "delivery refused"),
        }
    }
}

impl From<InboxError> for IngestError {
    fn from(err: InboxError) -> Self {
        if err.is_storage_full() {
            IngestError::StorageFull
        } else {
            IngestError::Inbox(err)
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = match &self {
            IngestError::UnknownWebhook => StatusCode::NOT_FOUND,
            IngestError::Body(BodyError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::Body(BodyError::BudgetExhausted { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::Body(BodyError::TooSlow) => StatusCode::REQUEST_TIMEOUT,
            IngestError::Body(BodyError::Unreadable) => StatusCode::BAD_REQUEST,
            IngestError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            IngestError::Inbox(_) => StatusCode::INTERNAL_SERVER_ERROR,
            IngestError::StorageFull | IngestError::DeadlineExceeded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let message = match &self {
            IngestError::Inbox(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, SqliteConnection};

    use super::*;

    /// SQLite's own error for a write past `max_page_count`, as a full disk gives it.
    async fn full_database_error() -> sqlx::Error {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (body BLOB)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("PRAGMA max_page_count = 4")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (zeroblob(100000))")
            .execute(&mut conn)
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn a_full_database_is_503_and_other_database_errors_are_500() {
        let full = IngestError::from(InboxError::Database(full_database_error().await));
        assert!(matches!(full, IngestError::StorageFull), "{full:?}");
        assert_eq!(full.result_label(), "storage_full");
        assert_eq!(
            full.into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );

        let other = IngestError::from(InboxError::Database(sqlx::Error::RowNotFound));
        assert_eq!(
            other.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let stopped = IngestError::from(InboxError::WriterStopped);
        assert_eq!(
            stopped.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
