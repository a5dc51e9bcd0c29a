//! Everything that can go wrong receiving a delivery, and the one place that turns it into an
//! HTTP status. Internal failures become a bare 500 (Kapso will retry); details go to the log.

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
    Inbox(#[from] InboxError),
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
            IngestError::DeadlineExceeded { .. } => "deadline",
        }
    }

    pub fn log(&self) {
        match self {
            IngestError::Inbox(err) => tracing::error!(error = %err, "delivery not stored"),
            IngestError::Unauthorized(err) => tracing::warn!(reason = %err, "delivery refused"),
            IngestError::DeadlineExceeded { .. } => {
                tracing::warn!(reason = %self, "delivery answered 503");
            }
            other => tracing::info!(reason = %other, "delivery refused"),
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
            IngestError::DeadlineExceeded { .. } => StatusCode::SERVICE_UNAVAILABLE,
        };
        let message = match &self {
            IngestError::Inbox(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}
