//! `e2ebench`: end-to-end latency of the whole pipeline, from a signed delivery posted to
//! switchboard to the reply arriving at the Meta proxy.
//!
//! It runs its own minimal Meta proxy on `--proxy-listen` (point `kapso.base_url` of the server
//! at it; `config/bench-e2e.toml` does) and posts one `whatsapp.message.received` every
//! 1/`--rate` s. Each message text carries a unique token; the server's echo route replies
//! with `{{message.text}}`, so each proxy call is matched to its delivery. Latency is measured
//! from the delivery's *scheduled* send time to the proxy call's arrival (open loop, so a
//! stalled pipeline shows up as latency rather than as a slower sender).
//!
//! Messages are spread over `--conversations` conversations, and the conversations over
//! `--numbers` business numbers (conversation i is on number i mod N), as a real deployment
//! sends from several numbers, each paced at its own rate; the proxy checks that each
//! conversation's replies arrive once each and in the order they were sent, and the report
//! gives the replies per `--window` seconds, so a pipeline that slows down shows.
//!
//! `--backlog N` measures draining instead: N deliveries are posted as fast as the server takes
//! them (`--concurrency` senders, each owning its conversations so their order is defined), and
//! the report gives how fast the replies came, window by window.

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

/// The first business number; the others follow it (`106540352242923`, ...).
const FIRST_PHONE_NUMBER_ID: u64 = 106_540_352_242_922;

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
    /// Conversations the messages are spread over (round robin).
    #[arg(long, default_value_t = 997)]
    conversations: usize,
    /// Business numbers the conversations are spread over (switchboard paces each number
    /// at its own rate, `kapso.default_send_rate` in the bench configs).
    #[arg(long, default_value_t = 4)]
    numbers: usize,
    /// Replies per window are reported for windows of this many seconds.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    window: f64,
    /// Post this many deliveries as fast as the server takes them, then time the drain
    /// (instead of the open loop at --rate).
    #[arg(long)]
    backlog: Option<usize>,
    /// Concurrent senders in --backlog mode.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Messages per burst: this many consecutive deliveries go to one conversation (for a
    /// server that buffers, whose route answers `{{messages.text}}`: one reply per burst).
    #[arg(long, default_value_t = 1)]
    burst: usize,
    /// The server's buffer window, subtracted from the last message of each burst's latency to
    /// report how late buffers flush.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    buffer_window_ms: u64,
    /// JSON output.
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
    /// Replies for a token that had already arrived.
    duplicates: AtomicU64,
    /// Replies that arrived after a later message of the same conversation.
    out_of_order: AtomicU64,
    /// The highest burst arrived per conversation (+1; 0 = none yet).
    last_per_conversation: Vec<AtomicU64>,
    /// When each delivery was answered (ns since `origin`).
    acked_ns: Vec<AtomicU64>,
    /// Consecutive deliveries per conversation.
    burst: usize,
}

impl Tracker {
    /// The conversation of delivery `seq`.
    fn conversation(&self, seq: usize) -> usize {
        (seq / self.burst) % self.last_per_conversation.len()
    }

    fn new(total: usize, conversations: usize, burst: usize) -> Tracker {
        Tracker {
            origin: Instant::now(),
            scheduled_ns: (0..total).map(|_| AtomicU64::new(0)).collect(),
            arrived_ns: (0..total).map(|_| AtomicU64::new(0)).collect(),
            replies: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            headers_ok: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            last_per_conversation: (0..conversations).map(|_| AtomicU64::new(0)).collect(),
            acked_ns: (0..total).map(|_| AtomicU64::new(0)).collect(),
            burst: burst.max(1),
        }
    }

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
    // One token per line: a buffered reply carries every message of its burst.
    let text = body["text"]["body"].as_str().unwrap_or_default();
    let tokens: Vec<Option<usize>> = text
        .lines()
        .map(|line| {
            line.rsplit('#')
                .next()
                .and_then(|n| n.parse::<usize>().ok())
        })
        .collect();
    for token in tokens {
        match token.and_then(|i| Some((i, tracker.arrived_ns.get(i)?))) {
            Some((seq, slot)) => {
                if slot
                    .compare_exchange(0, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
                {
                    tracker.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                // Bursts must arrive in order; inside one, messages are ordered by arrival at
                // the server, which concurrent sends do not fix.
                let last = &tracker.last_per_conversation[tracker.conversation(seq)];
                let mark = (seq / tracker.burst) as u64 + 1;
                if last.fetch_max(mark, Ordering::Relaxed) > mark {
                    tracker.out_of_order.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                tracker.unmatched.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": body["to"], "wa_id": body["to"] }],
        "messages": [{ "id": format!("wamid.E2E{now}") }]
    }))
}

fn delivery(
    run: u64,
    seq: usize,
    conversation: usize,
    numbers: usize,
    secret: &[u8],
) -> (Vec<u8>, String) {
    let phone_number_id =
        (FIRST_PHONE_NUMBER_ID + (conversation % numbers.max(1)) as u64).to_string();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let body = json!({
        "message": { "id": format!("wamid.E2E{run:X}.{seq}"), "timestamp": now.to_string(), "type": "text",
                     "from": format!("1555{conversation:07}"), "text": { "body": format!("e2e #{seq}") },
                     "kapso": { "direction": "inbound", "status": "received", "processing_status": "pending",
                                "origin": "cloud_api", "has_media": false } },
        "conversation": { "id": format!("conv-{run:X}-{conversation}"), "status": "active",
                          "phone_number_id": phone_number_id },
        "is_new_conversation": false,
        "phone_number_id": phone_number_id
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
    if args.conversations == 0 || args.concurrency == 0 || args.burst == 0 || args.numbers == 0 {
        bail!("--conversations, --concurrency, --burst and --numbers must be above 0");
    }
    if args.window <= 0.0 {
        bail!("--window must be above 0");
    }
    let (total, warmup_count) = match args.backlog {
        Some(n) => (n, 0),
        None => (
            (args.rate as f64 * (args.warmup + args.duration)).ceil() as usize,
            (args.rate as f64 * args.warmup).ceil() as usize,
        ),
    };
    let tracker = Arc::new(Tracker::new(total, args.conversations, args.burst));
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
    let sender = Arc::new(Sender {
        client,
        url: args.url.clone(),
        secret: args.secret.clone(),
        run_id: rand::random(),
        numbers: args.numbers,
        statuses: Arc::default(),
        tracker: tracker.clone(),
    });
    let posted = match args.backlog {
        Some(_) => post_backlog(sender.clone(), total, args.concurrency).await,
        None => post_at_rate(sender.clone(), total, args.rate).await,
    };

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
    // The server's own figure for buffers: due time -> job committed.
    let server_flush = if args.burst > 1 {
        server_flush_lateness(&sender.client, &args.url).await
    } else {
        None
    };

    let mut latencies_us: Vec<u64> = Vec::new();
    let mut arrivals_ns: Vec<u64> = Vec::new();
    let mut missing = 0u64;
    for seq in warmup_count..total {
        let arrived = tracker.arrived_ns[seq].load(Ordering::Relaxed);
        if arrived == 0 {
            missing += 1;
        } else {
            let scheduled = tracker.scheduled_ns[seq].load(Ordering::Relaxed);
            latencies_us.push(arrived.saturating_sub(scheduled) / 1000);
            arrivals_ns.push(arrived);
        }
    }
    latencies_us.sort_unstable();
    arrivals_ns.sort_unstable();
    let mut acks_us: Vec<u64> = (warmup_count..total)
        .map(|seq| {
            let acked = tracker.acked_ns[seq].load(Ordering::Relaxed);
            acked.saturating_sub(tracker.scheduled_ns[seq].load(Ordering::Relaxed)) / 1000
        })
        .collect();
    acks_us.sort_unstable();
    let ack_pct = |p: f64| percentile_ms(&acks_us, p);
    let pct = |p: f64| percentile_ms(&latencies_us, p);
    // Replies per window, counted from the first measured delivery's scheduled time.
    let start_ns =
        tracker.scheduled_ns[warmup_count.min(total.saturating_sub(1))].load(Ordering::Relaxed);
    let window_ns = (args.window * 1e9) as u64;
    let mut windows: Vec<u64> = Vec::new();
    for arrived in &arrivals_ns {
        let index = (arrived.saturating_sub(start_ns) / window_ns.max(1)) as usize;
        if windows.len() <= index {
            windows.resize(index + 1, 0);
        }
        windows[index] += 1;
    }
    let window_rates: Vec<f64> = windows.iter().map(|n| *n as f64 / args.window).collect();
    let span_s = arrivals_ns
        .last()
        .map_or(0.0, |last| last.saturating_sub(start_ns) as f64 / 1e9);
    let replies_per_s = if span_s > 0.0 {
        arrivals_ns.len() as f64 / span_s
    } else {
        0.0
    };
    let statuses = sender
        .statuses
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    let measured = total - warmup_count;
    let duplicates = tracker.duplicates.load(Ordering::Relaxed);
    let proxy_calls = tracker.replies.load(Ordering::Relaxed);
    // How late each burst's reply came after its buffer was due (last message + window).
    let window_us = args.buffer_window_ms * 1000;
    let mut lateness_us: Vec<u64> = (warmup_count..total)
        .filter(|seq| (seq + 1) % args.burst == 0)
        .filter_map(|seq| {
            let arrived = tracker.arrived_ns[seq].load(Ordering::Relaxed);
            (arrived != 0).then(|| {
                (arrived.saturating_sub(tracker.scheduled_ns[seq].load(Ordering::Relaxed)) / 1000)
                    .saturating_sub(window_us)
            })
        })
        .collect();
    lateness_us.sort_unstable();
    let late_pct = |p: f64| percentile_ms(&lateness_us, p);
    let out_of_order = tracker.out_of_order.load(Ordering::Relaxed);
    let report = json!({
        "mode": if args.backlog.is_some() { "backlog" } else { "rate" },
        "rate": args.rate,
        "measured_deliveries": measured,
        "post_seconds": posted.as_secs_f64(),
        "conversations": args.conversations,
        "replies_matched": latencies_us.len(),
        "replies_missing": missing,
        "replies_duplicate": duplicates,
        "replies_out_of_order": out_of_order,
        "replies_unmatched": tracker.unmatched.load(Ordering::Relaxed),
        "replies_per_second": replies_per_s,
        "window_seconds": args.window,
        "replies_per_second_by_window": window_rates,
        "burst": args.burst,
        "proxy_calls": proxy_calls,
        "flush_lateness_ms": { "p50": late_pct(50.0), "p99": late_pct(99.0), "max": late_pct(100.0) },
        "server_flush_lateness_ms_at_most": server_flush.as_ref().map(|f| json!({ "p50": f.p50_ms, "p99": f.p99_ms, "flushes": f.count })),
        "proxy_calls_with_api_key": tracker.headers_ok.load(Ordering::Relaxed),
        "delivery_statuses": statuses,
        "e2e_latency_ms": { "p50": pct(50.0), "p90": pct(90.0), "p99": pct(99.0), "p99.9": pct(99.9), "max": pct(100.0) },
        "ack_latency_ms": { "p50": ack_pct(50.0), "p99": ack_pct(99.0), "max": ack_pct(100.0) },
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        match args.backlog {
            Some(n) => println!(
                "  deliveries  {n} posted as fast as accepted ({} senders) in {:.1} s",
                args.concurrency,
                posted.as_secs_f64()
            ),
            None => println!(
                "  deliveries  {measured} at {} /s (after {:.0} s warm-up)",
                args.rate, args.warmup
            ),
        }
        println!(
            "  replies     {} matched, {missing} missing, {duplicates} duplicate, {out_of_order} out of conversation order ({} conversations)",
            latencies_us.len(),
            args.conversations
        );
        println!("  rate        {replies_per_s:.0} replies/s over {span_s:.1} s");
        let rates: Vec<String> = window_rates.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "  windows     replies/s per {:.0} s: {}",
            args.window,
            rates.join(" ")
        );
        if args.burst > 1 {
            println!(
                "  bursts      {proxy_calls} proxy calls for {} bursts of {}; flush lateness ms p50 {:.2}  p99 {:.2}  max {:.2} (last message + {} ms window -> proxy call)",
                measured / args.burst,
                args.burst,
                late_pct(50.0),
                late_pct(99.0),
                late_pct(100.0),
                args.buffer_window_ms
            );
            match &server_flush {
                Some(f) => println!(
                    "  flushes     {} at the server; due time -> job committed: p50 <= {} ms  p99 <= {} ms (histogram bucket bounds from /metrics)",
                    f.count, f.p50_ms, f.p99_ms
                ),
                None => println!("  flushes     the server's /metrics had no buffer_flush_lateness_seconds histogram"),
            }
        }
        println!("  statuses    {statuses:?}");
        println!(
            "  e2e ms      p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2} (scheduled delivery -> proxy call)",
            pct(50.0), pct(90.0), pct(99.0), pct(99.9), pct(100.0)
        );
        println!(
            "  ack ms      p50 {:.2}  p99 {:.2}  max {:.2} (scheduled delivery -> switchboard's answer)",
            ack_pct(50.0),
            ack_pct(99.0),
            ack_pct(100.0)
        );
    }
    let extra_runs = proxy_calls.saturating_sub((total / args.burst) as u64);
    if missing > 0
        || latencies_us.is_empty()
        || duplicates > 0
        || out_of_order > 0
        || extra_runs > 0
    {
        eprintln!(
            "e2ebench: FAIL: {missing} replies never reached the proxy, {duplicates} duplicates, {out_of_order} out of order, {extra_runs} handler runs more than one per burst"
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The `p`th percentile (0-100) of sorted microseconds, in milliseconds; NaN when empty.
fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted_us.len() - 1) as f64).round() as usize;
    sorted_us[i.min(sorted_us.len() - 1)] as f64 / 1000.0
}

/// What every posted delivery needs.
struct Sender {
    client: reqwest::Client,
    url: String,
    secret: String,
    run_id: u64,
    /// Business numbers the conversations are spread over.
    numbers: usize,
    statuses: Arc<Mutex<HashMap<u16, u64>>>,
    tracker: Arc<Tracker>,
}

impl Sender {
    /// Posts delivery `seq` and counts its status.
    async fn post(&self, seq: usize) {
        let conversation = self.tracker.conversation(seq);
        let (body, signature) = delivery(
            self.run_id,
            seq,
            conversation,
            self.numbers,
            self.secret.as_bytes(),
        );
        let status = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("x-webhook-event", "whatsapp.message.received")
            .header("x-webhook-payload-version", "v2")
            .header("x-idempotency-key", format!("{:x}-{seq}", self.run_id))
            .header("x-webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        self.tracker.acked_ns[seq].store(self.tracker.elapsed_ns(), Ordering::Relaxed);
        if let Ok(mut map) = self.statuses.lock() {
            *map.entry(status).or_default() += 1;
        }
    }
}

/// Open loop: delivery `seq` is posted at `seq / rate` s, whatever the server is doing.
async fn post_at_rate(sender: Arc<Sender>, total: usize, rate: u64) -> Duration {
    let started = Instant::now();
    let period_ns = 1e9 / rate as f64;
    let tracker = sender.tracker.clone();
    let mut inflight = tokio::task::JoinSet::new();
    for seq in 0..total {
        let at = tracker.origin + Duration::from_nanos((seq as f64 * period_ns) as u64);
        tokio::time::sleep_until(at.into()).await;
        let scheduled = u64::try_from((at - tracker.origin).as_nanos()).unwrap_or(u64::MAX);
        tracker.scheduled_ns[seq].store(scheduled, Ordering::Relaxed);
        let sender = sender.clone();
        inflight.spawn(async move { sender.post(seq).await });
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}
    started.elapsed()
}

/// Closed loop: `concurrency` senders post as fast as the server answers. Each sender owns the
/// conversations `c` with `c % concurrency == index` and posts their messages in order, so
/// every conversation's order is defined.
async fn post_backlog(sender: Arc<Sender>, total: usize, concurrency: usize) -> Duration {
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for index in 0..concurrency {
        let sender = sender.clone();
        senders.spawn(async move {
            for seq in (0..total).filter(|s| sender.tracker.conversation(*s) % concurrency == index)
            {
                let tracker = &sender.tracker;
                let now = u64::try_from(tracker.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
                tracker.scheduled_ns[seq].store(now, Ordering::Relaxed);
                sender.post(seq).await;
            }
        });
    }
    while senders.join_next().await.is_some() {}
    started.elapsed()
}

/// Quantiles (as bucket upper bounds) of the server's `buffer_flush_lateness_seconds`.
struct ServerFlush {
    count: u64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Reads the flush-lateness histogram from the server's `/metrics` (same origin as `url`).
async fn server_flush_lateness(client: &reqwest::Client, url: &str) -> Option<ServerFlush> {
    let mut metrics_url = reqwest::Url::parse(url).ok()?;
    metrics_url.set_path("/metrics");
    let text = client
        .get(metrics_url)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    // Lines like `switchboard_buffer_flush_lateness_seconds_bucket{le="0.05"} 123`.
    let mut buckets: Vec<(f64, u64)> = text
        .lines()
        .filter_map(|line| {
            let rest =
                line.strip_prefix("switchboard_buffer_flush_lateness_seconds_bucket{le=\"")?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let count = buckets.last()?.1;
    let bound = |q: f64| {
        let needed = (q * count as f64).ceil() as u64;
        buckets
            .iter()
            .find(|(_, c)| *c >= needed)
            .map_or(f64::INFINITY, |(le, _)| le * 1000.0)
    };
    Some(ServerFlush {
        count,
        p50_ms: bound(0.5),
        p99_ms: bound(0.99),
    })
}
