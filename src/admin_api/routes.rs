//! Routes: list them with their pause state and waiting jobs, pause and resume one, through
//! the same [`Pauser`] as the console and `switchboard routes`.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::{AdminApiState, ApiError};
use crate::jobs::pause::{Changed, PauseError, Pauser, Surface};
use crate::jobs::Reach;

impl AdminApiState {
    /// The pause operation over this server's routes and job schedule.
    pub fn pauser(&self) -> Pauser<'_> {
        Pauser {
            writer: &self.writer,
            reads: &self.reads,
            router: &self.router,
            apply: Reach::InProcess {
                queue: self.queue.as_ref(),
                priority: &self.priority,
            },
        }
    }
}

impl From<PauseError> for ApiError {
    fn from(err: PauseError) -> Self {
        match err {
            PauseError::UnknownRoute(_) => ApiError::not_found(err.to_string()),
            PauseError::Database(err) => err.into(),
        }
    }
}

/// `{"routes": [...]}`: configured routes in config order, then paused ones the config no
/// longer has (`"configured": false`).
pub async fn list(State(state): State<AdminApiState>) -> Result<Json<Value>, ApiError> {
    let routes = state.pauser().list().await?;
    Ok(Json(json!({ "routes": routes })))
}

pub async fn pause(
    State(state): State<AdminApiState>,
    Path(name): Path<String>,
) -> Result<Json<Changed>, ApiError> {
    let now = state.clock.now_ms();
    Ok(Json(
        state.pauser().pause(&name, Surface::AdminApi, now).await?,
    ))
}

pub async fn resume(
    State(state): State<AdminApiState>,
    Path(name): Path<String>,
) -> Result<Json<Changed>, ApiError> {
    let now = state.clock.now_ms();
    Ok(Json(
        state.pauser().resume(&name, Surface::AdminApi, now).await?,
    ))
}
