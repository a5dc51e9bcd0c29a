//! All SQL on `route_pauses` and `route_pause_requests`, and the per-route job counts the
//! route listings show.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use sqlx::{SqliteConnection, SqlitePool};

/// A paused route as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RoutePause {
    pub route: String,
    /// Unix ms.
    pub paused_at: i64,
    pub paused_by: String,
}

/// Every paused route, by name.
pub async fn list(pool: &SqlitePool) -> Result<Vec<RoutePause>, sqlx::Error> {
    sqlx::query_as("SELECT route, paused_at, paused_by FROM route_pauses ORDER BY route")
        .fetch_all(pool)
        .await
}

/// The names of the paused routes.
pub async fn names(pool: &SqlitePool) -> Result<HashSet<String>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar("SELECT route FROM route_pauses")
        .fetch_all(pool)
        .await?;
    Ok(names.into_iter().collect())
}

/// Pauses `route` (kept as it is when paused already: false).
pub async fn pause(
    conn: &mut SqliteConnection,
    route: &str,
    by: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO route_pauses (route, paused_at, paused_by) VALUES (?1, ?2, ?3)
         ON CONFLICT (route) DO NOTHING",
    )
    .bind(route)
    .bind(now)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Resumes `route` (false when it was not paused).
pub async fn resume(conn: &mut SqliteConnection, route: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM route_pauses WHERE route = ?")
        .bind(route)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Asks a running server to read `route_pauses` again; part of the caller's transaction.
pub async fn request_reload(
    conn: &mut SqliteConnection,
    route: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO route_pause_requests (route, requested_at) VALUES (?1, ?2)
         ON CONFLICT (route) DO UPDATE SET requested_at = excluded.requested_at",
    )
    .bind(route)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether another process changed a pause (a cheap read before [`take_requests`]).
pub async fn has_requests(pool: &SqlitePool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM route_pause_requests)")
        .fetch_one(pool)
        .await
}

/// Takes the requests [`request_reload`] left.
pub async fn take_requests(conn: &mut SqliteConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("DELETE FROM route_pause_requests RETURNING route")
        .fetch_all(conn)
        .await
}

/// A route's unfinished and dead jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    pub queued: i64,
    pub running: i64,
    pub dead: i64,
}

/// Queued, running and dead jobs per route (an index range over those states, never the done
/// jobs: for the route listings, never for the pipeline).
pub async fn job_counts(pool: &SqlitePool) -> Result<HashMap<String, JobCounts>, sqlx::Error> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT route, state, COUNT(*) FROM jobs
         WHERE state IN ('queued', 'running', 'dead') GROUP BY route, state",
    )
    .fetch_all(pool)
    .await?;
    let mut counts: HashMap<String, JobCounts> = HashMap::new();
    for (route, state, n) in rows {
        let entry = counts.entry(route).or_default();
        match state.as_str() {
            "queued" => entry.queued = n,
            "running" => entry.running = n,
            _ => entry.dead = n,
        }
    }
    Ok(counts)
}
