//! The single writer: takes every delivery queued since its last commit and writes them in one
//! transaction. If that transaction fails, each delivery is retried in its own, so one bad
//! delivery cannot fail its neighbours.

use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqlitePool};
use tokio::sync::{mpsc, Notify};

use super::{store, DeliveryOutcome, InboxError, NewDelivery, WriteRequest};
use crate::config::Synchronous;
use crate::event::Event;
use crate::write_health::WriteHealth;
use crate::write_priority::WritePriority;

/// Group-commit tuning.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommit {
    /// Most deliveries committed in one transaction.
    pub max_batch: usize,
    /// Deliveries that may wait for the writer before senders are held back.
    pub queue_capacity: usize,
    /// `synchronous` of inbox commits, and the connection's level to restore afterwards (the
    /// connection is shared with the pipeline, which may run with less durability).
    pub synchronous: Synchronous,
    pub connection_synchronous: Synchronous,
}

impl Default for GroupCommit {
    fn default() -> Self {
        GroupCommit {
            max_batch: 512,
            queue_capacity: 4096,
            synchronous: Synchronous::Full,
            connection_synchronous: Synchronous::Full,
        }
    }
}

pub(super) async fn run(
    pool: SqlitePool,
    mut requests: mpsc::Receiver<WriteRequest>,
    config: GroupCommit,
    committed: Arc<Notify>,
    priority: WritePriority,
    health: WriteHealth,
) {
    let mut group = Vec::with_capacity(config.max_batch);
    while let Some(first) = requests.recv().await {
        group.push(first);
        while group.len() < config.max_batch {
            match requests.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        if write_group(&pool, &mut group, &config, &priority, &health).await > 0 {
            committed.notify_one();
        }
    }
    tracing::debug!("inbox writer stopped: no more senders");
}

/// Writes and answers a group; returns how many new events were stored.
async fn write_group(
    pool: &SqlitePool,
    group: &mut Vec<WriteRequest>,
    config: &GroupCommit,
    priority: &WritePriority,
    health: &WriteHealth,
) -> usize {
    let urgent = priority.urgent();
    let acquired = pool.acquire().await;
    drop(urgent);
    let mut conn = match acquired {
        Ok(conn) => conn,
        Err(err) => {
            health.failed(
                "inbox",
                &format_args!("cannot get the database connection: {err}"),
            );
            for request in group.drain(..) {
                let _ = request
                    .reply
                    .send(Err(InboxError::Database(sqlx::Error::PoolTimedOut)));
            }
            return 0;
        }
    };
    let size = group.len();
    let mut stored = 0;
    match write_all(&mut conn, group, config).await {
        Ok(outcomes) => {
            health.committed("inbox");
            for (request, outcome) in group.drain(..).zip(outcomes) {
                stored += outcome.stored;
                // A dropped receiver means the client went away; the delivery is stored anyway.
                let _ = request.reply.send(Ok(outcome));
            }
        }
        Err(err) => {
            tracing::debug!(error = %err, group.size = size, "inbox: group commit failed, retrying deliveries one by one");
            for request in group.drain(..) {
                let result = write_all(&mut conn, std::slice::from_ref(&request), config)
                    .await
                    .map(|mut outcomes| outcomes.remove(0));
                match &result {
                    Ok(outcome) => {
                        stored += outcome.stored;
                        health.committed("inbox");
                    }
                    Err(err) => health.failed("inbox", err),
                }
                let _ = request.reply.send(result);
            }
        }
    }
    stored
}

/// Writes the deliveries in one `BEGIN IMMEDIATE` transaction and commits at the inbox's
/// `synchronous` level.
async fn write_all(
    conn: &mut PoolConnection<Sqlite>,
    group: &[WriteRequest],
    config: &GroupCommit,
) -> Result<Vec<DeliveryOutcome>, InboxError> {
    let switch = config.synchronous != config.connection_synchronous;
    if switch {
        store::set_synchronous(conn, config.synchronous).await?;
    }
    let result = write_all_in_transaction(conn, group).await;
    if switch {
        if let Err(err) = store::set_synchronous(conn, config.connection_synchronous).await {
            tracing::warn!(error = %err, "inbox: cannot restore the connection's synchronous level");
        }
    }
    result
}

async fn write_all_in_transaction(
    conn: &mut PoolConnection<Sqlite>,
    group: &[WriteRequest],
) -> Result<Vec<DeliveryOutcome>, InboxError> {
    store::begin_immediate(conn).await?;
    match write_group_rows(conn, group).await {
        Ok(outcomes) => match store::commit(conn).await {
            Ok(()) => Ok(outcomes),
            Err(err) => {
                store::rollback(conn).await;
                Err(err.into())
            }
        },
        Err(err) => {
            store::rollback(conn).await;
            Err(err)
        }
    }
}

/// A group's rows in a handful of statements: its events (multi-row, deduplicated by the
/// unique index), any quarantined bodies, then one row per delivery with its final counts.
async fn write_group_rows(
    conn: &mut PoolConnection<Sqlite>,
    group: &[WriteRequest],
) -> Result<Vec<DeliveryOutcome>, InboxError> {
    let first_id = store::last_delivery_id(conn).await? + 1;
    let ids: Vec<i64> = (first_id..).take(group.len()).collect();
    let event_rows: Vec<(i64, &NewDelivery, &Event)> = group
        .iter()
        .zip(&ids)
        .flat_map(|(request, id)| {
            let delivery = &request.delivery;
            delivery.events.iter().map(move |e| (*id, delivery, e))
        })
        .collect();
    let mut new_keys = store::insert_events(conn, &event_rows).await?;

    let mut rows = Vec::with_capacity(group.len());
    for (request, id) in group.iter().zip(&ids) {
        let delivery = &request.delivery;
        let mut outcome = DeliveryOutcome {
            delivery_id: *id,
            stored: 0,
            duplicates: 0,
            quarantined: 0,
        };
        for event in &delivery.events {
            // The first delivery of the group carrying a new key stored it; later ones are duplicates.
            let key = (
                event.event_type.clone(),
                event.dedupe_key.as_str().to_owned(),
            );
            if new_keys.remove(&key) {
                outcome.stored += 1;
            } else {
                outcome.duplicates += 1;
            }
        }
        for item in &delivery.quarantine {
            if store::insert_quarantine(conn, *id, delivery, item).await? {
                outcome.quarantined += 1;
            } else {
                outcome.duplicates += 1;
            }
        }
        rows.push((delivery, outcome));
    }
    store::insert_deliveries(conn, &rows).await?;
    Ok(rows.into_iter().map(|(_, outcome)| outcome).collect())
}
