//! `e2ebench`: end-to-end latency of the whole pipeline, from a signed delivery posted to
//! switchboard to the reply arriving at the Meta proxy.
//!
//! It runs its own minimal Meta proxy on `--proxy-listen` (point `kapso.base_url` of the server
//! at it; `config/bench-e2e.toml` does) and posts one `whatsapp.message.received` every
//! 1/`--rate` s. Each message text carries a unique token; the server's echo route replies
//! with `{{message.text}}`, so each proxy call is matched to its delivery. Latency is measured
//! from the delivery's *scheduled* send time to the proxy call's arrival (open loop, so a
//! stalled pipeline shows up as latency rather than as a slower sender).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use clap::Parser;
use serde_json::{json, Value};
use switchboard::ingest::signature::sign;

const PHONE_NUMBER_ID: &str = "106540352242922";

#[derive(Debug, Parser)]
#[command(
    name = "e2ebench",
    about = "End-to-end latency: delivery to switchboard -> reply at the Meta proxy"
)]
struct Args {
    /// The switchboard webhook to post to.
    #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/bench")]
    url: String,
    #[arg(long, env = "LOADGEN_SECRET", default_value = "bench-secret")]
    secret: String,
    /// Where this tool's fake Meta proxy listens (the server's kapso.base_url).
    #[arg(long, default_value = "127.0.0.1:18090")]
    proxy_listen: String,
    /// Deliveries per second.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    #[arg(long, default_value_t = 20.0, value_name = "SECS")]
    duration: f64,
    /// Not measured.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    warmup: f64,
    /// How long to wait for the last replies after the last delivery.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    drain: u64,
    #[arg(long)]
    json: bool,
}

/// Scheduled send time of each token (ns since `origin`) and arrival at the proxy.
struct Tracker {
    origin: Instant,
    scheduled_ns: Vec<AtomicU64>,
    arrived_ns: Vec<AtomicU64>,
    replies: AtomicU64,
    unmatched: AtomicU64,
    headers_ok: AtomicU64,
}

impl Tracker {
    fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("e2ebench: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("e2ebench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn fake_proxy(
    State(tracker): State<Arc<Tracker>>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let now = tracker.elapsed_ns();
    tracker.replies.fetch_add(1, Ordering::Relaxed);
    if headers.get("x-api-key").is_some() {
        tracker.headers_ok.fetch_add(1, Ordering::Relaxed);
    }
    let token = body["text"]["body"]
        .as_str()
        .and_then(|t| t.rsplit('#').next())
        .and_then(|n| n.parse::<usize>().ok());
    match token.and_then(|i| tracker.arrived_ns.get(i)) {
        Some(slot) => {
            let _ = slot.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
        None => {
            tracker.unmatched.fetch_add(1, Ordering::Relaxed);
        }
    }
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": body["to"], "wa_id": body["to"] }],
        "messages": [{ "id": format!("wamid.E2E{now}") }]
    }))
}

fn delivery(run: u64, seq: usize, secret: &[u8]) -> (Vec<u8>, String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let body = json!({
        "message": { "id": format!("wamid.E2E{run:X}.{seq}"), "timestamp": now.to_string(), "type": "text",
                     "from": format!("1555{:07}", seq % 997), "text": { "body": format!("e2e #{seq}") },
                     "kapso": { "direction": "inbound", "status": "received", "processing_status": "pending",
                                "origin": "cloud_api", "has_media": false } },
        "conversation": { "id": format!("conv-{run:X}-{}", seq % 997), "status": "active",
                          "phone_number_id": PHONE_NUMBER_ID },
        "is_new_conversation": false,
        "phone_number_id": PHONE_NUMBER_ID
    })
    .to_string()
    .into_bytes();
    let signature = sign(secret, &body);
    (body, signature)
}

async fn run(args: Args) -> Result<ExitCode> {
    if args.rate == 0 {
        bail!("--rate must be above 0");
    }
    let total = (args.rate as f64 * (args.warmup + args.duration)).ceil() as usize;
    let warmup_count = (args.rate as f64 * args.warmup).ceil() as usize;
    let tracker = Arc::new(Tracker {
        origin: Instant::now(),
        scheduled_ns: (0..total).map(|_| AtomicU64::new(0)).collect(),
        arrived_ns: (0..total).map(|_| AtomicU64::new(0)).collect(),
        replies: AtomicU64::new(0),
        unmatched: AtomicU64::new(0),
        headers_ok: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind(&args.proxy_listen)
        .await
        .with_context(|| format!("cannot listen on --proxy-listen {}", args.proxy_listen))?;
    let proxy = Router::new()
        .route(
            "/meta/whatsapp/{version}/{phone_number_id}/messages",
            post(fake_proxy),
        )
        .with_state(tracker.clone());
    let proxy_task = tokio::spawn(async move { axum::serve(listener, proxy).await });

    let client = reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .build()?;
    let run_id: u64 = rand::random();
    let statuses: Arc<Mutex<HashMap<u16, u64>>> = Arc::default();
    let period_ns = 1e9 / args.rate as f64;
    let mut inflight = tokio::task::JoinSet::new();
    for seq in 0..total {
        let at = tracker.origin + Duration::from_nanos((seq as f64 * period_ns) as u64);
        tokio::time::sleep_until(at.into()).await;
        let scheduled = u64::try_from((at - tracker.origin).as_nanos()).unwrap_or(u64::MAX);
        tracker.scheduled_ns[seq].store(scheduled, Ordering::Relaxed);
        let (body, signature) = delivery(run_id, seq, args.secret.as_bytes());
        let request = client
            .post(&args.url)
            .header("content-type", "application/json")
            .header("x-webhook-event", "whatsapp.message.received")
            .header("x-webhook-payload-version", "v2")
            .header("x-idempotency-key", format!("{run_id:x}-{seq}"))
            .header("x-webhook-signature", signature)
            .body(body);
        let statuses = statuses.clone();
        inflight.spawn(async move {
            let status = request
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            if let Ok(mut map) = statuses.lock() {
                *map.entry(status).or_default() += 1;
            }
        });
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}

    // Wait for the last replies: poll the counter (this is a benchmark's drain, not a test).
    let deadline = Instant::now() + Duration::from_secs(args.drain);
    while Instant::now() < deadline {
        let arrived = tracker.arrived_ns[warmup_count..]
            .iter()
            .filter(|a| a.load(Ordering::Relaxed) != 0)
            .count();
        if arrived == total - warmup_count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy_task.abort();

    let mut latencies_us: Vec<u64> = Vec::new();
    let mut missing = 0u64;
    for seq in warmup_count..total {
        let arrived = tracker.arrived_ns[seq].load(Ordering::Relaxed);
        if arrived == 0 {
            missing += 1;
        } else {
            let scheduled = tracker.scheduled_ns[seq].load(Ordering::Relaxed);
            latencies_us.push(arrived.saturating_sub(scheduled) / 1000);
        }
    }
    latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (latencies_us.len() - 1) as f64).round() as usize;
        latencies_us[i.min(latencies_us.len() - 1)] as f64 / 1000.0
    };
    let statuses = statuses.lock().map(|m| m.clone()).unwrap_or_default();
    let measured = total - warmup_count;
    let report = json!({
        "rate": args.rate,
        "measured_deliveries": measured,
        "replies_matched": latencies_us.len(),
        "replies_missing": missing,
        "replies_unmatched": tracker.unmatched.load(Ordering::Relaxed),
        "proxy_calls_with_api_key": tracker.headers_ok.load(Ordering::Relaxed),
        "delivery_statuses": statuses,
        "e2e_latency_ms": { "p50": pct(50.0), "p90": pct(90.0), "p99": pct(99.0), "p99.9": pct(99.9), "max": pct(100.0) },
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "  deliveries  {measured} at {} /s (after {:.0} s warm-up)",
            args.rate, args.warmup
        );
        println!(
            "  replies     {} matched, {missing} missing",
            latencies_us.len()
        );
        println!("  statuses    {statuses:?}");
        println!(
            "  e2e ms      p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2} (scheduled delivery -> proxy call)",
            pct(50.0), pct(90.0), pct(99.0), pct(99.9), pct(100.0)
        );
    }
    if missing > 0 || latencies_us.is_empty() {
        eprintln!("e2ebench: FAIL: {missing} replies never reached the proxy");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
