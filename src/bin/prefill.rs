//! `prefill`: writes history into a switchboard database, so that retention has something to
//! delete (`scripts/soak.sh`): rows received between `--from-ms` and `--to-ms`, evenly spread,
//! in the proportions a server produces them.
//!
//! Two mixes, one unit of history each:
//! - `replies`: a conversation turn of a server that answers every message (8 rows): the
//!   inbound message's delivery and event, the `done` job that replied and its `outbound` row,
//!   and the `whatsapp.message.sent` and `.delivered` status updates of the reply (a delivery
//!   and an event each, 1 s and 2 s later).
//! - `inbound`: one delivery and its `whatsapp.message.received` event (2 rows), shaped like
//!   what `loadgen` posts to a server without routes (message ids sequential, as loadgen's are;
//!   the `replies` mix has random-looking ones, as WhatsApp's are).
//!
//! Payloads are built like Kapso's (`kapso_sim::samples`, or loadgen's body) and their columns
//! are derived by the server's own [`Event::from_payload`]; the schema is the server's own
//! migrations. Rows go in through multi-row INSERTs, thousands of units per transaction, and the
//! WAL is copied back and truncated at the end, so the server starts on a plain file.
//! The database must not be in use by a server (`prefill` takes the server's lock).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use switchboard::config::StorageConfig;
use switchboard::db;
use switchboard::event::{Event, Origin, PayloadVersion};
use switchboard::kapso_sim::samples::{self, MessageStatus, SampleContext};

const PHONE_NUMBER_ID: &str = "106540352242922";
const TEXTS: &[&str] = &[
    "Hi, I would like to check the status of my order",
    "Is the store open on Sunday?",
    "Thanks! That worked.",
    "Can I change the delivery address for order 48213?",
    "ok",
    "What are your opening hours this week?",
    "I was charged twice for the same order, can you help?",
    "Perfect, see you tomorrow at 10",
];
/// Stands for loadgen's random run id in the `inbound` mix's message ids, which, like
/// loadgen's, are sequential after it.
const AGING_RUN: &str = "A61E0000000000FF";
/// Units per transaction.
const UNITS_PER_TRANSACTION: u64 = 2_000;
/// Rows per multi-row INSERT (at most 16 binds a row; SQLite allows 32,766 per statement).
const ROWS_PER_STATEMENT: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mix {
    /// A conversation turn answered by a route: 3 deliveries, 3 events, 1 done job, 1 outbound.
    Replies,
    /// One delivery and its inbound message event, as loadgen posts them.
    Inbound,
}

impl Mix {
    fn rows_per_unit(self) -> u64 {
        match self {
            Mix::Replies => 8,
            Mix::Inbound => 2,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "prefill",
    about = "Writes old rows into a switchboard database (for scripts/soak.sh): deliveries, events, done jobs and outbound rows, as a server leaves them"
)]
struct Args {
    /// The SQLite database file; created with the server's migrations if missing. No server may
    /// be using it.
    #[arg(long)]
    db: PathBuf,
    /// What one unit of history is.
    #[arg(long, value_enum, default_value = "replies")]
    mix: Mix,
    /// Rows to write, over all tables (rounded down to whole units of the mix).
    #[arg(long)]
    rows: u64,
    /// Arrival time of the first unit, Unix milliseconds.
    #[arg(long)]
    from_ms: i64,
    /// Arrival time of the last unit, Unix milliseconds (a turn's status updates come 2 s later).
    #[arg(long)]
    to_ms: i64,
    /// The webhook the rows came through.
    #[arg(long, default_value = "bench")]
    webhook: String,
    /// Conversations the units are spread over.
    #[arg(long, default_value_t = 1000)]
    conversations: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("prefill: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("prefill: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Rows written, per table.
#[derive(Debug, Default, Clone, Copy)]
struct Written {
    deliveries: u64,
    events: u64,
    jobs: u64,
    outbound: u64,
}

impl Written {
    fn total(&self) -> u64 {
        self.deliveries + self.events + self.jobs + self.outbound
    }
}

async fn run(args: Args) -> Result<()> {
    if args.to_ms < args.from_ms {
        bail!("--to-ms must not be before --from-ms");
    }
    if args.conversations == 0 {
        bail!("--conversations must be at least 1");
    }
    let storage = StorageConfig {
        url: format!("sqlite://{}", args.db.display()),
        ..StorageConfig::default()
    };
    let _lock = db::lock_for_server(&storage)?;
    let pool = db::open_for_server(&storage).await?;
    let mut conn = pool.acquire().await?;
    let started = Instant::now();
    let units = args.rows / args.mix.rows_per_unit();
    let mut ids = NextIds::read(&mut conn).await?;
    let mut written = Written::default();
    let mut unit = 0;
    while unit < units {
        let end = (unit + UNITS_PER_TRANSACTION).min(units);
        let mut batch = Batch {
            webhook: args.webhook.clone(),
            ..Batch::default()
        };
        for i in unit..end {
            let at = spread(args.from_ms, args.to_ms, i, units);
            let conversation = i.wrapping_mul(7919) % args.conversations;
            match args.mix {
                Mix::Replies => batch.turn(&mut ids, i, at, conversation),
                Mix::Inbound => batch.inbound(&mut ids, i, at, conversation),
            }
        }
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let inserted = batch.insert(&mut conn).await;
        if inserted.is_err() {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        }
        inserted?;
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        // One connection and no readers: this copies the whole WAL back, and the next
        // transaction writes the WAL from its start again.
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut *conn)
            .await?;
        written.deliveries += batch.deliveries.len() as u64;
        written.events += batch.events.len() as u64;
        written.jobs += batch.jobs.len() as u64;
        written.outbound += batch.outbound.len() as u64;
        unit = end;
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut *conn)
        .await
        .context("checkpointing the WAL")?;
    drop(conn);
    pool.close().await;
    println!(
        "prefill rows {} deliveries {} events {} jobs {} outbound {} seconds {:.1} mix {:?} from_ms {} to_ms {}",
        written.total(),
        written.deliveries,
        written.events,
        written.jobs,
        written.outbound,
        started.elapsed().as_secs_f64(),
        args.mix,
        args.from_ms,
        args.to_ms
    );
    Ok(())
}

/// The arrival time of unit `i` of `units`, spread evenly from `from` to `to`.
fn spread(from: i64, to: i64, i: u64, units: u64) -> i64 {
    if units <= 1 {
        return from;
    }
    let span = i128::from(to - from);
    let offset = span * i128::from(i) / i128::from(units - 1);
    from + i64::try_from(offset).unwrap_or(0)
}

/// The next free id of each table, numbered here so jobs can name their events.
struct NextIds {
    delivery: i64,
    event: i64,
    job: i64,
}

impl NextIds {
    async fn read(conn: &mut SqliteConnection) -> Result<NextIds, sqlx::Error> {
        Ok(NextIds {
            delivery: next_id(conn, "SELECT COALESCE(MAX(id), 0) + 1 FROM deliveries").await?,
            event: next_id(conn, "SELECT COALESCE(MAX(id), 0) + 1 FROM events").await?,
            job: next_id(conn, "SELECT COALESCE(MAX(id), 0) + 1 FROM jobs").await?,
        })
    }
}

async fn next_id(conn: &mut SqliteConnection, sql: &'static str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(sql).fetch_one(conn).await
}

struct DeliveryRow {
    id: i64,
    received_at: i64,
    body_bytes: i64,
    idempotency_key: String,
    event_type: String,
}

struct EventRow {
    id: i64,
    delivery_id: i64,
    received_at: i64,
    routed_at: i64,
    event: Event,
}

struct JobRow {
    id: i64,
    conversation: String,
    order_ts: i64,
    event_id: i64,
    created_at: i64,
    finished_at: i64,
}

struct OutboundRow {
    job_id: i64,
    body: String,
    wamid: String,
    created_at: i64,
    sent_at: i64,
}

/// The rows of one transaction.
#[derive(Default)]
struct Batch {
    webhook: String,
    deliveries: Vec<DeliveryRow>,
    events: Vec<EventRow>,
    jobs: Vec<JobRow>,
    outbound: Vec<OutboundRow>,
}

/// Conversation `n`'s id and the customer's number (digits only).
fn conversation(n: u64) -> (String, String) {
    (
        format!("7b1e0f52-3c9d-4a61-9e0b-{n:012x}"),
        format!("1555{:07}", 1_000_000 + n),
    )
}

impl Batch {
    /// One delivery carrying one v2 event of `event_type`.
    fn delivery(
        &mut self,
        ids: &mut NextIds,
        event_type: &str,
        payload: Value,
        at: i64,
        routed_at: i64,
        idempotency_key: String,
    ) -> i64 {
        let body_bytes = i64::try_from(payload.to_string().len()).unwrap_or(0);
        let Value::Object(map) = payload else {
            return 0;
        };
        let event = Event::from_payload(
            event_type,
            PayloadVersion::V2,
            map,
            Origin {
                idempotency_key: Some(&idempotency_key),
                index: 0,
            },
        );
        let delivery_id = ids.delivery;
        ids.delivery += 1;
        let event_id = ids.event;
        ids.event += 1;
        self.deliveries.push(DeliveryRow {
            id: delivery_id,
            received_at: at,
            body_bytes,
            idempotency_key,
            event_type: event_type.to_owned(),
        });
        self.events.push(EventRow {
            id: event_id,
            delivery_id,
            received_at: at,
            routed_at,
            event,
        });
        event_id
    }

    /// A conversation turn answered by the `echo` route (see [`Mix::Replies`]).
    fn turn(&mut self, ids: &mut NextIds, i: u64, at: i64, conversation_n: u64) {
        let (conversation_id, customer_phone) = conversation(conversation_n);
        let ctx = SampleContext {
            phone_number_id: PHONE_NUMBER_ID.to_owned(),
            conversation_id: conversation_id.clone(),
            customer_phone: customer_phone.clone(),
            timestamp: at / 1000,
            ..SampleContext::default()
        };
        let text = TEXTS[(i % TEXTS.len() as u64) as usize];
        let inbound_wamid = wamid(2 * i);
        let reply_wamid = wamid(2 * i + 1);
        let event_id = self.delivery(
            ids,
            samples::MESSAGE_RECEIVED,
            samples::text_received(&ctx, &inbound_wamid, text),
            at,
            at + 2,
            idempotency_key(i, 0),
        );
        let job_id = ids.job;
        ids.job += 1;
        self.jobs.push(JobRow {
            id: job_id,
            conversation: conversation_id,
            order_ts: ctx.timestamp * 1000,
            event_id,
            created_at: at + 5,
            finished_at: at + 300,
        });
        let body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": customer_phone,
            "type": "text",
            "text": { "body": text }
        });
        self.outbound.push(OutboundRow {
            job_id,
            body: body.to_string(),
            wamid: reply_wamid.clone(),
            created_at: at + 10,
            sent_at: at + 290,
        });
        for (n, status) in [MessageStatus::Sent, MessageStatus::Delivered]
            .into_iter()
            .enumerate()
        {
            let later = at + 1000 * (n as i64 + 1);
            let status_ctx = SampleContext {
                timestamp: later / 1000,
                ..ctx.clone()
            };
            self.delivery(
                ids,
                status.event_type(),
                samples::text_status_update(&status_ctx, &reply_wamid, status, text),
                later,
                later,
                idempotency_key(i, n as u64 + 1),
            );
        }
    }

    /// One delivery of one inbound message, shaped like loadgen's (see [`Mix::Inbound`]).
    fn inbound(&mut self, ids: &mut NextIds, i: u64, at: i64, conversation_n: u64) {
        let (conversation_id, phone) = conversation(conversation_n);
        let text = TEXTS[(i % TEXTS.len() as u64) as usize];
        let payload = json!({
            "message": {
                "id": format!("wamid.HBgL{AGING_RUN}{i:012X}"),
                "timestamp": (at / 1000).to_string(),
                "type": "text",
                "from": phone,
                "text": { "body": text },
                "kapso": {
                    "direction": "inbound",
                    "status": "received",
                    "processing_status": "pending",
                    "origin": "cloud_api",
                    "has_media": false
                }
            },
            "conversation": {
                "id": conversation_id,
                "phone_number": format!("+{phone}"),
                "status": "active",
                "phone_number_id": PHONE_NUMBER_ID
            },
            "is_new_conversation": false,
            "phone_number_id": PHONE_NUMBER_ID
        });
        self.delivery(
            ids,
            samples::MESSAGE_RECEIVED,
            payload,
            at,
            at,
            idempotency_key(i, 9),
        );
    }

    async fn insert(&self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        for chunk in self.events.chunks(ROWS_PER_STATEMENT) {
            let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO events
                     (id, delivery_id, webhook, event_type, dedupe_key, payload_version,
                      phone_number_id, conversation_id, message_id, message_type, direction,
                      occurred_at, received_at, flags, payload, routed_at) ",
            );
            query.push_values(chunk, |mut row, e| {
                row.push_bind(e.id)
                    .push_bind(e.delivery_id)
                    .push_bind(&self.webhook)
                    .push_bind(&e.event.event_type)
                    .push_bind(e.event.dedupe_key.as_str())
                    .push_bind(e.event.payload_version.as_str())
                    .push_bind(&e.event.phone_number_id)
                    .push_bind(&e.event.conversation_id)
                    .push_bind(&e.event.message_id)
                    .push_bind(&e.event.message_type)
                    .push_bind(&e.event.direction)
                    .push_bind(e.event.occurred_at)
                    .push_bind(e.received_at)
                    .push_bind(e.event.flags_text())
                    .push_bind(e.event.stored_payload())
                    .push_bind(e.routed_at);
            });
            query.build().execute(&mut *conn).await?;
        }
        for chunk in self.deliveries.chunks(ROWS_PER_STATEMENT) {
            let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO deliveries
                     (id, webhook, received_at, body_bytes, idempotency_key, event_header,
                      payload_version, batch, events, stored, duplicates, quarantined, result) ",
            );
            query.push_values(chunk, |mut row, d| {
                row.push_bind(d.id)
                    .push_bind(&self.webhook)
                    .push_bind(d.received_at)
                    .push_bind(d.body_bytes)
                    .push_bind(&d.idempotency_key)
                    .push_bind(&d.event_type)
                    .push_bind("v2")
                    .push_bind(0_i64)
                    .push_bind(1_i64)
                    .push_bind(1_i64)
                    .push_bind(0_i64)
                    .push_bind(0_i64)
                    .push_bind("stored");
            });
            query.build().execute(&mut *conn).await?;
        }
        for chunk in self.jobs.chunks(ROWS_PER_STATEMENT) {
            let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO jobs
                     (id, route, handler, webhook, event_type, conversation, ordering_key,
                      order_ts, order_seq, event_ids, state, attempts, max_attempts, run_at,
                      created_at, updated_at, finished_at) ",
            );
            query.push_values(chunk, |mut row, j| {
                row.push_bind(j.id)
                    .push_bind("echo")
                    .push_bind("reply")
                    .push_bind(&self.webhook)
                    .push_bind(samples::MESSAGE_RECEIVED)
                    .push_bind(&j.conversation)
                    .push_bind(switchboard::jobs::ordering_key(
                        "echo",
                        Some(j.conversation.as_str()),
                    ))
                    .push_bind(j.order_ts)
                    .push_bind(j.event_id)
                    .push_bind(format!("[{}]", j.event_id))
                    .push_bind("done")
                    .push_bind(1_i64)
                    .push_bind(8_i64)
                    .push_bind(j.created_at)
                    .push_bind(j.created_at)
                    .push_bind(j.finished_at)
                    .push_bind(j.finished_at);
            });
            query.build().execute(&mut *conn).await?;
        }
        for chunk in self.outbound.chunks(ROWS_PER_STATEMENT) {
            let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO outbound
                     (job_id, seq, phone_number_id, action, body, state, wamid, created_at,
                      sent_at) ",
            );
            query.push_values(chunk, |mut row, o| {
                row.push_bind(o.job_id)
                    .push_bind(0_i64)
                    .push_bind(PHONE_NUMBER_ID)
                    .push_bind("send")
                    .push_bind(&o.body)
                    .push_bind("sent")
                    .push_bind(&o.wamid)
                    .push_bind(o.created_at)
                    .push_bind(o.sent_at);
            });
            query.build().execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// A WhatsApp-like message id: WhatsApp's are random-looking, so consecutive turns land on
/// scattered pages of the `events_dedupe` index, as they do on a real server.
fn wamid(n: u64) -> String {
    format!(
        "wamid.HBgL{:016X}{:016X}",
        splitmix64(n),
        splitmix64(n ^ 0x5bd1_e995)
    )
}

/// SplitMix64: a fixed, well-spread 64-bit hash of `x`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A UUID-shaped idempotency key, unique per unit and delivery of the unit.
fn idempotency_key(unit: u64, n: u64) -> String {
    format!(
        "0f0e5a1c-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (unit >> 48) & 0xffff,
        n & 0xfff,
        (unit >> 36) & 0xfff,
        unit & 0xffff_ffff_ffff
    )
}
