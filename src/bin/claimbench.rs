//! `claimbench`: what taking the next job costs as the backlog grows.
//!
//! For each backlog size it creates a fresh SQLite database (in `--dir`, on the project disk),
//! writes that many queued jobs (spread over `--lanes` conversations), loads them into the job
//! queue the server uses, then times `--samples` rounds of take → finish(done) through the real
//! queue and its group-committed writes. After each round one new job is committed and offered
//! (not timed), so the backlog stays at its size. The figures per size should be about equal:
//! claiming walks an in-memory ordered set, not the table.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use switchboard::clock::Clock;
use switchboard::config::StorageConfig;
use switchboard::db;
use switchboard::jobs::queue::{JobQueue, LocalQueue};
use switchboard::jobs::store::{self, Finish};
use switchboard::jobs::NewJob;
use switchboard::metrics::Metrics;
use switchboard::write_priority::WritePriority;
use switchboard::write_queue::WriteQueue;

#[derive(Debug, Parser)]
#[command(
    name = "claimbench",
    about = "Cost of taking the next job, by backlog size"
)]
struct Args {
    /// Backlog sizes to measure (queued jobs before timing starts).
    #[arg(long, value_delimiter = ',', default_value = "10,10000,100000")]
    sizes: Vec<usize>,
    /// Take → finish rounds timed per size.
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    /// Conversations (ordering lanes) the queued jobs are spread over.
    #[arg(long, default_value_t = 1000)]
    lanes: usize,
    /// Where the databases are created (keep it on the project disk, not tmpfs).
    #[arg(long, default_value = "target/bench/claim")]
    dir: PathBuf,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("claimbench: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("claimbench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let mut results = Vec::new();
    for &size in &args.sizes {
        let path = args.dir.join(format!("claim-{size}.db"));
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let storage = StorageConfig {
            url: format!("sqlite://{}", path.display()),
            ..StorageConfig::default()
        };
        let pool = db::open_for_server(&storage).await?;
        fill(&pool, size, args.lanes).await?;
        let (writes, writer) = WriteQueue::start(
            pool.clone(),
            512,
            WritePriority::default(),
            switchboard::write_health::WriteHealth::default(),
        );
        let load_started = Instant::now();
        let queue = LocalQueue::recover(
            &pool,
            writes.clone(),
            Clock::System,
            Arc::new(Metrics::new()),
        )
        .await?;
        let load = load_started.elapsed();
        let shutdown = CancellationToken::new();
        let mut take_ns = Vec::with_capacity(args.samples);
        let mut round_ns = Vec::with_capacity(args.samples);
        for _ in 0..args.samples {
            let started = Instant::now();
            let job = queue
                .take(&shutdown)
                .await
                .context("the queue ran dry before the samples were taken")?;
            take_ns.push(started.elapsed().as_nanos());
            queue.finish(&job, Finish::Done).await?;
            round_ns.push(started.elapsed().as_nanos());
            refill(&pool, &queue, args.lanes).await?;
        }
        drop(queue);
        drop(writes);
        let _ = writer.await;
        pool.close().await;
        take_ns.sort_unstable();
        round_ns.sort_unstable();
        let median = |v: &[u128]| v[v.len() / 2] as f64 / 1000.0;
        let p99 = |v: &[u128]| v[(v.len() * 99 / 100).min(v.len() - 1)] as f64 / 1000.0;
        results.push(serde_json::json!({
            "queued": size,
            "load_ms": load.as_secs_f64() * 1000.0,
            "take_us": { "p50": median(&take_ns), "p99": p99(&take_ns) },
            "take_and_finish_us": { "p50": median(&round_ns), "p99": p99(&round_ns) },
        }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        println!(
            "{:>10}  {:>9}  {:>14}  {:>14}  {:>22}",
            "queued", "load ms", "take p50 us", "take p99 us", "take+finish p50/p99 us"
        );
        for r in &results {
            println!(
                "{:>10}  {:>9.1}  {:>14.1}  {:>14.1}  {:>12.0} / {:<9.0}",
                r["queued"],
                r["load_ms"].as_f64().unwrap_or(f64::NAN),
                r["take_us"]["p50"].as_f64().unwrap_or(f64::NAN),
                r["take_us"]["p99"].as_f64().unwrap_or(f64::NAN),
                r["take_and_finish_us"]["p50"].as_f64().unwrap_or(f64::NAN),
                r["take_and_finish_us"]["p99"].as_f64().unwrap_or(f64::NAN),
            );
        }
    }
    Ok(())
}

/// Writes `count` queued, due jobs spread over `lanes` conversations, in one transaction.
async fn fill(pool: &SqlitePool, count: usize, lanes: usize) -> Result<()> {
    let mut tx = pool.begin().await?;
    for i in 0..count {
        let i = i64::try_from(i)?;
        let lane = i % i64::try_from(lanes.max(1))?;
        sqlx::query(
            "INSERT INTO jobs (route, handler, webhook, event_type, conversation, ordering_key,
                               order_ts, order_seq, event_ids, max_attempts, run_at, created_at, updated_at)
             VALUES ('bench', 'log', 'bench', 'whatsapp.message.received', ?1, ?2, ?3, ?3, '[]', 8, 0, 0, 0)",
        )
        .bind(format!("conv-{lane}"))
        .bind(format!("bench\u{1f}conv-{lane}"))
        .bind(i)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Commits one more queued job and offers it, as the dispatcher would.
async fn refill(pool: &SqlitePool, queue: &LocalQueue, lanes: usize) -> Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM jobs")
        .fetch_one(&mut *conn)
        .await?;
    let job = NewJob {
        events: None,
        route: "bench".into(),
        handler: "log".into(),
        webhook: "bench".into(),
        event_type: "whatsapp.message.received".into(),
        conversation: Some(format!("conv-{}", next % i64::try_from(lanes.max(1))?)),
        ordering_key: Some(format!(
            "bench\u{1f}conv-{}",
            next % i64::try_from(lanes.max(1))?
        )),
        order_ts: next,
        order_seq: next,
        event_ids: Vec::new(),
        max_attempts: 8,
        run_at: 0,
    };
    let ids = store::enqueue_all(&mut conn, std::slice::from_ref(&job), 0).await?;
    sqlx::query("COMMIT").execute(&mut *conn).await?;
    queue.offer(vec![job.into_unfinished(ids[0], 0)]);
    Ok(())
}
