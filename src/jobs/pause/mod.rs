//! Pausing and resuming a route: one operation behind the admin API, the console and
//! `switchboard routes`. A paused route's events still create its jobs (nothing is lost); they
//! wait, held out of the schedule, until the route is resumed, then run in their original
//! order. Jobs already running finish. The pause is durable (`route_pauses`), so it survives a
//! restart; the running server keeps the paused set in memory, so claiming a job never reads
//! the table.

pub mod store;

use serde::Serialize;
use sqlx::SqlitePool;

use super::Reach;
use crate::router::Router;
pub use store::{JobCounts, RoutePause};

#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("no route named `{0}` in the config")]
    UnknownRoute(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Who changed a pause: the surface, recorded as `paused_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    AdminApi,
    Console,
    Cli,
}

impl Surface {
    pub fn name(self) -> &'static str {
        match self {
            Surface::AdminApi => "admin api",
            Surface::Console => "console",
            Surface::Cli => "cli",
        }
    }
}

/// A route as the listings show it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RouteStatus {
    pub name: String,
    /// False for a paused route the config no longer has (its pause is kept, and reported).
    pub configured: bool,
    /// Its event types (`on`), as configured.
    pub on: Vec<String>,
    /// Its handler's kind (`reply`, `http`, ...); `None` when not configured.
    pub handler: Option<String>,
    pub paused: bool,
    /// When it was paused (Unix ms), and by which surface.
    pub paused_at: Option<i64>,
    pub paused_by: Option<String>,
    /// Its jobs waiting (`queued`: held while paused), running, and dead.
    pub jobs: JobCounts,
}

/// What a pause or resume did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Changed {
    /// False when the route already was as asked (the call is idempotent).
    pub changed: bool,
    #[serde(flatten)]
    pub route: RouteStatus,
}

/// Where pauses are read and written, the routes in force, and who applies them.
pub struct Pauser<'a> {
    pub writer: &'a SqlitePool,
    pub reads: &'a SqlitePool,
    pub router: &'a Router,
    /// Who applies it: by request, through `route_pause_requests`.
    pub apply: Reach<'a>,
}

impl Pauser<'_> {
    /// Every configured route in config order, then paused routes the config no longer has.
    pub async fn list(&self) -> Result<Vec<RouteStatus>, sqlx::Error> {
        let pauses = store::list(self.reads).await?;
        let counts = store::job_counts(self.reads).await?;
        let pause_of = |name: &str| pauses.iter().find(|p| p.route == name);
        let mut listed: Vec<RouteStatus> = self
            .router
            .routes()
            .iter()
            .map(|route| {
                let pause = pause_of(&route.name);
                RouteStatus {
                    name: route.name.clone(),
                    configured: true,
                    on: route.on(),
                    handler: Some(route.handler.kind().to_owned()),
                    paused: pause.is_some(),
                    paused_at: pause.map(|p| p.paused_at),
                    paused_by: pause.map(|p| p.paused_by.clone()),
                    jobs: counts.get(&route.name).copied().unwrap_or_default(),
                }
            })
            .collect();
        for pause in pauses
            .iter()
            .filter(|p| self.router.get(&p.route).is_none())
        {
            listed.push(RouteStatus {
                name: pause.route.clone(),
                configured: false,
                on: Vec::new(),
                handler: None,
                paused: true,
                paused_at: Some(pause.paused_at),
                paused_by: Some(pause.paused_by.clone()),
                jobs: counts.get(&pause.route).copied().unwrap_or_default(),
            });
        }
        Ok(listed)
    }

    /// Pauses configured route `route`: no new run of its jobs starts until it is resumed.
    pub async fn pause(&self, route: &str, by: Surface, now: i64) -> Result<Changed, PauseError> {
        if self.router.get(route).is_none() {
            return Err(PauseError::UnknownRoute(route.to_owned()));
        }
        self.change(route, true, by, now).await
    }

    /// Resumes `route` (a configured route, or a paused one the config no longer has): its
    /// waiting jobs run, in their original order.
    pub async fn resume(&self, route: &str, by: Surface, now: i64) -> Result<Changed, PauseError> {
        if self.router.get(route).is_none() && !store::names(self.reads).await?.contains(route) {
            return Err(PauseError::UnknownRoute(route.to_owned()));
        }
        self.change(route, false, by, now).await
    }

    async fn change(
        &self,
        route: &str,
        pause: bool,
        by: Surface,
        now: i64,
    ) -> Result<Changed, PauseError> {
        self.apply.after_urgent().await;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let changed = if pause {
            store::pause(&mut tx, route, by.name(), now).await?
        } else {
            store::resume(&mut tx, route).await?
        };
        if changed {
            if let Reach::ByRequest = self.apply {
                store::request_reload(&mut tx, route, now).await?;
            }
        }
        tx.commit().await?;
        if let Reach::InProcess { queue, .. } = &self.apply {
            // Always, not only on a change: it also applies what another process asked for.
            queue.reload_pauses(self.reads).await?;
        }
        match (changed, pause) {
            (true, true) => tracing::info!(route, by = by.name(), "route paused"),
            (true, false) => tracing::info!(route, by = by.name(), "route resumed"),
            (false, _) => {}
        }
        let status = self
            .list()
            .await?
            .into_iter()
            .find(|r| r.name == route)
            .unwrap_or_else(|| RouteStatus {
                // A resumed route the config no longer has: listed no more.
                name: route.to_owned(),
                configured: false,
                on: Vec::new(),
                handler: None,
                paused: false,
                paused_at: None,
                paused_by: None,
                jobs: JobCounts::default(),
            });
        Ok(Changed {
            changed,
            route: status,
        })
    }
}
