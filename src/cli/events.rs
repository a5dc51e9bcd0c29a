//! `switchboard events list|show|replay`: read the inbox, and run an event through the routes
//! again.

use anyhow::Context;
use serde_json::Value;
use sqlx::SqlitePool;

use super::table::{format_ms, one_line, print_table};
use super::EventsCommand;
use crate::config::Config;
use crate::inbox::store::{self, EventFilter, QuarantineEntry};
use crate::jobs::replay::Replayer;
use crate::jobs::Reach;
use crate::router::Router;

/// `--since`: a duration such as `30m`, `6h` or `2d`, in milliseconds.
fn duration_ms(text: &str) -> anyhow::Result<i64> {
    use crate::config::retention::Age;
    match Age::parse(text) {
        Ok(age @ Age(Some(_))) => Ok(crate::config::catch_up::age_ms(age)),
        Ok(Age(None)) => {
            anyhow::bail!("--since {text}: give a duration such as \"30m\", \"6h\" or \"2d\"")
        }
        Err(message) => anyhow::bail!("--since: {message}"),
    }
}

/// Widest message text shown in the table.
const TEXT_WIDTH: usize = 40;

pub async fn events(pool: &SqlitePool, command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::Replay { .. } => {
            anyhow::bail!("`events replay` needs the config's routes: it runs through `replay`")
        }
        EventsCommand::List {
            quarantined: true,
            limit,
            json,
            ..
        } => {
            let entries = store::list_quarantine(pool, limit).await?;
            if json {
                let listed = entries
                    .iter()
                    .map(quarantine_json)
                    .collect::<Result<Vec<_>, _>>()?;
                println!("{}", serde_json::to_string_pretty(&listed)?);
                return Ok(());
            }
            let rows = entries
                .iter()
                .map(|q| {
                    vec![
                        q.id.to_string(),
                        format_ms(q.received_at),
                        q.webhook.clone(),
                        q.event_header.clone().unwrap_or_else(|| "-".into()),
                        q.body.len().to_string(),
                        q.reason.clone(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "RECEIVED",
                    "WEBHOOK",
                    "EVENT HEADER",
                    "BYTES",
                    "REASON",
                ],
                rows,
            );
        }
        EventsCommand::List {
            flagged,
            webhook,
            event_type,
            conversation,
            text,
            flag,
            since,
            limit,
            json,
            ..
        } => {
            let received_since_ms = match since.as_deref() {
                None => None,
                Some(text) => Some(crate::clock::now_ms().saturating_sub(duration_ms(text)?)),
            };
            let filter = EventFilter {
                webhook,
                event_type,
                flagged_only: flagged,
                conversation_id: conversation,
                text,
                flag,
                received_since_ms,
                received_until_ms: None,
                before_id: None,
                limit,
            };
            let events = store::list_events(pool, &filter).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&events)?);
                return Ok(());
            }
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            let rows = events
                .iter()
                .map(|e| {
                    vec![
                        e.id.to_string(),
                        format_ms(e.received_at),
                        e.webhook.clone(),
                        e.event_type.clone(),
                        dash(&e.phone_number_id),
                        dash(&e.conversation_id),
                        e.text
                            .as_deref()
                            .map_or_else(|| "-".to_owned(), |t| one_line(t, TEXT_WIDTH)),
                        dash(&e.flags),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "RECEIVED",
                    "WEBHOOK",
                    "TYPE",
                    "PHONE NUMBER",
                    "CONVERSATION",
                    "MESSAGE",
                    "FLAGS",
                ],
                rows,
            );
        }
        EventsCommand::Show {
            id,
            quarantined: true,
            json,
        } => {
            let entry = store::get_quarantine(pool, id)
                .await?
                .with_context(|| format!("no quarantined delivery with id {id}"))?;
            let body = String::from_utf8_lossy(&entry.body).into_owned();
            if json {
                let mut value = quarantine_json(&entry)?;
                value["body"] = Value::String(body);
                value["body_json"] = serde_json::from_slice(&entry.body).unwrap_or(Value::Null);
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("id:              {}", entry.id);
                println!("delivery:        {}", entry.delivery_id);
                println!("received:        {}", format_ms(entry.received_at));
                println!("webhook:         {}", entry.webhook);
                println!("reason:          {}", entry.reason);
                println!(
                    "event header:    {}",
                    entry.event_header.as_deref().unwrap_or("-")
                );
                println!(
                    "idempotency key: {}",
                    entry.idempotency_key.as_deref().unwrap_or("-")
                );
                println!("sha256:          {}", entry.body_sha256);
                println!("body ({} bytes):\n{body}", entry.body.len());
            }
        }
        EventsCommand::Show { id, json, .. } => {
            let event = store::get_event(pool, id)
                .await?
                .with_context(|| format!("no event with id {id}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&event)?);
            } else {
                let payload: Value = serde_json::from_str(&event.payload)
                    .with_context(|| format!("event {id}: the stored payload is not JSON"))?;
                let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                println!("id:              {}", event.id);
                println!("delivery:        {}", event.delivery_id);
                println!("received:        {}", format_ms(event.received_at));
                println!("webhook:         {}", event.webhook);
                println!("type:            {}", event.event_type);
                println!("payload version: {}", event.payload_version);
                println!("dedupe key:      {}", event.dedupe_key);
                println!("phone number id: {}", dash(&event.phone_number_id));
                println!("conversation:    {}", dash(&event.conversation_id));
                println!("message:         {}", dash(&event.message_id));
                println!("message type:    {}", dash(&event.message_type));
                println!("text:            {}", dash(&event.text));
                println!("direction:       {}", dash(&event.direction));
                println!("idempotency key: {}", dash(&event.idempotency_key));
                println!("flags:           {}", dash(&event.flags));
                println!("payload:\n{}", serde_json::to_string_pretty(&payload)?);
            }
        }
    }
    Ok(())
}

/// A quarantined delivery without its body, plus the body's size.
fn quarantine_json(entry: &QuarantineEntry) -> serde_json::Result<Value> {
    let mut value = serde_json::to_value(entry)?;
    value["body_bytes"] = Value::from(entry.body.len());
    Ok(value)
}

/// `switchboard events replay ID [--force]`: the admin API's replay, with the routes of
/// `config`; the jobs reach a running server through `job_requests`.
pub async fn replay(
    config: &Config,
    pool: &SqlitePool,
    id: i64,
    force: bool,
    json: bool,
) -> anyhow::Result<()> {
    let router = Router::new(config).context("compiling [[routes]]")?;
    let replayer = Replayer {
        writer: pool,
        reads: pool,
        router: &router,
        schedule: Reach::ByRequest,
    };
    let replayed = replayer.replay(id, force, crate::clock::now_ms()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&replayed)?);
        return Ok(());
    }
    if replayed.matched.is_empty() {
        println!("event {id}: no route matches it now; nothing to do");
    }
    for (route, job) in &replayed.jobs {
        println!("event {id}: route `{route}` -> job {job}, queued (a running server runs it now)");
    }
    for skipped in &replayed.skipped {
        println!(
            "event {id}: route `{}` skipped: it already has job {} ({}); {}",
            skipped.route,
            skipped.job,
            skipped.state,
            if skipped.state == "dead" {
                "retry that job instead (`switchboard jobs retry`), or pass --force"
            } else {
                "pass --force to run it again"
            }
        );
    }
    Ok(())
}
