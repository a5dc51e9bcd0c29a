//! `switchboard jobs list|retry`: inspect and replay handler jobs.

use anyhow::Context;
use sqlx::SqlitePool;

use super::table::{format_ms, print_table};
use super::JobsCommand;
use crate::jobs::store::{self as job_store, JobFilter};

pub async fn jobs(pool: &SqlitePool, command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::List {
            dead,
            state,
            route,
            limit,
            json,
        } => {
            let filter = JobFilter {
                state: if dead { Some("dead".to_owned()) } else { state },
                route,
                before_id: None,
                limit,
            };
            let rows = job_store::list(pool, &filter).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let rows = rows
                    .iter()
                    .map(|j| {
                        let events = j.event_ids().map_or_else(
                            |_| j.event_ids.clone(),
                            |ids| {
                                let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
                                ids.join(",")
                            },
                        );
                        vec![
                            j.id.to_string(),
                            j.route.clone(),
                            j.handler.clone(),
                            j.state.clone(),
                            format!("{}/{}", j.attempts, j.max_attempts),
                            events,
                            format_ms(j.run_at),
                            j.last_error.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "ID",
                        "ROUTE",
                        "HANDLER",
                        "STATE",
                        "ATTEMPTS",
                        "EVENTS",
                        "RUN AT",
                        "LAST ERROR",
                    ],
                    rows,
                );
            }
        }
        JobsCommand::Retry { id } => {
            let job = job_store::get(pool, id)
                .await?
                .with_context(|| format!("no job with id {id}"))?;
            if !job_store::retry_now(pool, id, crate::clock::now_ms()).await? {
                anyhow::bail!(
                    "job {id} is {}; only dead or queued jobs can be retried",
                    job.state
                );
            }
            println!("job {id} ({}) queued to run again", job.route);
        }
    }
    Ok(())
}
