//! `loadgen`: posts unique, correctly signed Kapso `whatsapp.message.received` deliveries to a
//! running switchboard and reports throughput and latency.
//!
//! Two modes:
//! - closed loop (`--rate 0`, the default): `--concurrency` workers each send a delivery, wait for
//!   the answer and send the next. Measures maximum throughput.
//! - open loop (`--rate N`): deliveries are scheduled every 1/N s whether or not earlier ones have
//!   been answered, with at most `--concurrency` in flight. Latency is measured from the
//!   *scheduled* send time, so a stalled server shows up as latency instead of being hidden
//!   (coordinated omission). Requests sent more than 5 ms behind schedule are reported as late,
//!   as is how often all in-flight slots were busy; those still unsent when the run ends are
//!   reported as skipped and count as failures.
//!
//! Bodies are built just before sending from precomputed parts (a few microseconds each, HMAC
//! included), so the generator stays cheap; its own CPU use is reported.
//!
//! `--timeline FILE` also writes every measured request, one line each, as
//! `<scheduled (open loop) or send (closed loop) time, Unix ms> <latency ms> <ok or error kind>`,
//! ordered by time, so a script can take the latency of any stretch of the run (such as the
//! seconds during which the server was pruning).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use rand::Rng;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;
use switchboard::ingest::signature::sign;
use tokio::sync::{mpsc, Semaphore};

const EVENT_TYPE: &str = "whatsapp.message.received";
const PHONE_NUMBER_ID: &str = "106540352242922";
const CONVERSATIONS: usize = 1000;
/// Open loop: a delivery sent this long after its scheduled time is reported as late.
const LATE_AFTER: Duration = Duration::from_millis(5);
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

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for switchboard: posts unique, signed Kapso deliveries and reports throughput and latency"
)]
struct Args {
    /// Webhook endpoint to post to.
    #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/bench")]
    url: String,
    /// Webhook secret used to sign each body (X-Webhook-Signature).
    #[arg(
        long,
        env = "LOADGEN_SECRET",
        default_value = "bench-secret",
        hide_env_values = true
    )]
    secret: String,
    /// Deliveries per second, open loop (latency from the scheduled send time). 0 = closed loop,
    /// maximum throughput.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Closed loop: number of workers. Open loop: most requests in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: u32,
    /// Measured duration, in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    duration: f64,
    /// Warm-up before the measured phase, in seconds (same traffic, not counted).
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    warmup: f64,
    /// Events per delivery. 1 = single v2 events; N>1 = Kapso batch bodies of N events.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: u32,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// Tokio worker threads for the generator (0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Per-request timeout, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    timeout: u64,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    allow_remote: bool,
    /// Also write every measured request to FILE: `<Unix ms it was scheduled (open loop) or sent
    /// (closed loop)> <latency ms> <ok or the error kind>`, one per line, in time order.
    #[arg(long, value_name = "FILE")]
    timeline: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("loadgen: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    validate(&args)?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if args.threads > 0 {
        builder.worker_threads(args.threads);
    }
    let runtime = builder.build().context("cannot start the tokio runtime")?;
    runtime.block_on(run_async(args))
}

fn validate(args: &Args) -> Result<()> {
    if !(args.duration.is_finite() && args.duration > 0.0) {
        bail!("--duration must be a positive number of seconds");
    }
    if !(args.warmup.is_finite() && args.warmup >= 0.0) {
        bail!("--warmup must be zero or a positive number of seconds");
    }
    if args.timeout == 0 {
        bail!("--timeout must be at least 1 second");
    }
    if args.rate > 1_000_000 {
        bail!("--rate above 1000000/s is not supported");
    }
    Ok(())
}

/// Everything a request needs, shared by all tasks.
struct Ctx {
    client: reqwest::Client,
    url: Url,
    generator: Generator,
}

async fn run_async(args: Args) -> Result<ExitCode> {
    let url = Url::parse(&args.url).with_context(|| format!("--url `{}`", args.url))?;
    if !args.allow_remote && !is_loopback(&url) {
        bail!(
            "--url {url} is not a loopback address; pass --allow-remote to load-test another host"
        );
    }
    let client = reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .pool_max_idle_per_host(args.concurrency as usize)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(args.timeout))
        .build()
        .context("cannot build the HTTP client")?;
    let ctx = Arc::new(Ctx {
        client,
        url,
        generator: Generator::new(args.secret.as_bytes(), args.batch),
    });

    preflight(&ctx).await?;

    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let origin = Instant::now();
    let origin_unix = SystemTime::now();
    let measure_start = origin + warmup;
    let end = measure_start + duration;
    // CPU used by the generator during the measured phase.
    let cpu_at_start = tokio::spawn(async move {
        tokio::time::sleep_until(measure_start.into()).await;
        process_cpu_ns()
    });

    let (stats, open) = if args.rate == 0 {
        let stats = closed_loop(&ctx, args.concurrency, measure_start, end).await?;
        (stats, None)
    } else {
        let (stats, open) = open_loop(
            &ctx,
            args.rate,
            args.concurrency,
            Duration::from_secs(args.timeout + 5),
            origin,
            measure_start,
            end,
        )
        .await?;
        (stats, Some(open))
    };
    let cpu_end = process_cpu_ns();
    let cpu_start = cpu_at_start.await.ok().flatten();
    let cpu = match (cpu_start, cpu_end) {
        (Some(a), Some(b)) => Some((b.saturating_sub(a) as f64 / 1e9, measure_start.elapsed())),
        _ => None,
    };

    if let Some(path) = &args.timeline {
        write_timeline(path, &stats.timeline, origin, origin_unix)
            .with_context(|| format!("cannot write --timeline {}", path.display()))?;
    }
    let report = Report::new(&args, &ctx, stats, open, measure_start, cpu);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.to_text());
    }

    if report.stats.ok == 0 && report.stats.transport_errors() > 0 {
        eprintln!("loadgen: FAIL: the server could not be reached");
        return Ok(ExitCode::from(2));
    }
    if report.stats.sent == 0 {
        eprintln!(
            "loadgen: FAIL: no request was sent in the measured phase (in open loop: still catching up on the warm-up's schedule; lower --rate or raise --concurrency)"
        );
        return Ok(ExitCode::from(1));
    }
    // In open loop, a scheduled delivery that could not even be sent failed too.
    let skipped = report.open.as_ref().map_or(0, |o| o.skipped);
    let attempted = report.stats.sent + skipped;
    let failed = attempted - report.stats.ok;
    if failed * 100 > attempted {
        let skipped_note = if skipped > 0 {
            format!(", {skipped} of them scheduled but never sent")
        } else {
            String::new()
        };
        eprintln!(
            "loadgen: FAIL: {failed} of {attempted} requests failed (more than 1%){skipped_note}"
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One delivery before the run: fails fast when the server is down or rejects our deliveries
/// (wrong secret, wrong webhook name), instead of producing a run of errors.
async fn preflight(ctx: &Ctx) -> Result<()> {
    let delivery = ctx.generator.build()?;
    let request = ctx.generator.request(&ctx.client, &ctx.url, delivery);
    let response = request
        .send()
        .await
        .with_context(|| format!("could not reach the server at {}", ctx.url))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status != reqwest::StatusCode::OK {
        bail!(
            "the server answered the first delivery with {status}: {}",
            body.chars().take(300).collect::<String>()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Deliveries

struct Conversation {
    id: String,
    /// Digits only, as in `message.from`.
    phone: String,
}

struct Delivery {
    body: Bytes,
    signature: String,
    idempotency_key: String,
}

/// Builds unique, signed deliveries: wamids and idempotency keys embed a random run id and a
/// sequence number, so two runs against the same database never collide.
struct Generator {
    secret: Vec<u8>,
    batch: u32,
    run_id: String,
    /// `xxxxxxxx-xxxx-4xxx-8xxx-`: the idempotency key is this plus a 12-digit sequence number.
    idempotency_prefix: String,
    conversations: Vec<Conversation>,
    next_delivery: AtomicU64,
    next_message: AtomicU64,
}

impl Generator {
    fn new(secret: &[u8], batch: u32) -> Self {
        let mut rng = rand::thread_rng();
        let run: u64 = rng.gen();
        let run_id = format!("{run:016X}");
        let idempotency_prefix = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-",
            rng.gen::<u32>(),
            rng.gen::<u16>(),
            rng.gen::<u16>() & 0xfff,
            rng.gen::<u16>() & 0xfff
        );
        let conversations = (0..CONVERSATIONS)
            .map(|i| Conversation {
                id: format!(
                    "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                    rng.gen::<u32>(),
                    rng.gen::<u16>(),
                    rng.gen::<u16>() & 0xfff,
                    0x8000 | (rng.gen::<u16>() & 0x3fff),
                    rng.gen::<u64>() & 0xffff_ffff_ffff
                ),
                phone: format!("1555{:07}", 1_000_000 + i * 7919 % 9_000_000),
            })
            .collect();
        Generator {
            secret: secret.to_vec(),
            batch,
            run_id,
            idempotency_prefix,
            conversations,
            next_delivery: AtomicU64::new(0),
            next_message: AtomicU64::new(0),
        }
    }

    fn build(&self) -> Result<Delivery> {
        let delivery_seq = self.next_delivery.fetch_add(1, Ordering::Relaxed);
        let first = self
            .next_message
            .fetch_add(u64::from(self.batch), Ordering::Relaxed);
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut body = String::with_capacity(700 * self.batch as usize + 80);
        if self.batch == 1 {
            self.write_message(&mut body, first, timestamp)?;
        } else {
            write!(body, r#"{{"type":"{EVENT_TYPE}","batch":true,"data":["#)?;
            for i in 0..u64::from(self.batch) {
                if i > 0 {
                    body.push(',');
                }
                self.write_message(&mut body, first + i, timestamp)?;
            }
            body.push_str("]}");
        }
        let signature = sign(&self.secret, body.as_bytes());
        Ok(Delivery {
            body: Bytes::from(body),
            signature,
            idempotency_key: format!("{}{delivery_seq:012x}", self.idempotency_prefix),
        })
    }

    /// One v2 `whatsapp.message.received` payload. All interpolated values are JSON-safe.
    fn write_message(&self, out: &mut String, seq: u64, timestamp: u64) -> std::fmt::Result {
        // Spread consecutive messages over the conversations.
        let conversation =
            &self.conversations[(seq.wrapping_mul(7919) % CONVERSATIONS as u64) as usize];
        let text = TEXTS[(seq % TEXTS.len() as u64) as usize];
        let (run, phone, cid) = (&self.run_id, &conversation.phone, &conversation.id);
        write!(
            out,
            concat!(
                r#"{{"message":{{"id":"wamid.HBgL{run}{seq:012X}","timestamp":"{ts}","type":"text","#,
                r#""from":"{phone}","text":{{"body":"{text}"}},"kapso":{{"direction":"inbound","#,
                r#""status":"received","processing_status":"pending","origin":"cloud_api","#,
                r#""has_media":false}}}},"conversation":{{"id":"{cid}","phone_number":"+{phone}","#,
                r#""status":"active","phone_number_id":"{pnid}"}},"is_new_conversation":false,"#,
                r#""phone_number_id":"{pnid}"}}"#
            ),
            run = run,
            seq = seq,
            ts = timestamp,
            phone = phone,
            text = text,
            cid = cid,
            pnid = PHONE_NUMBER_ID,
        )
    }

    fn request(
        &self,
        client: &reqwest::Client,
        url: &Url,
        delivery: Delivery,
    ) -> reqwest::RequestBuilder {
        let mut request = client
            .post(url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("X-Webhook-Event", HeaderValue::from_static(EVENT_TYPE))
            .header("X-Webhook-Payload-Version", HeaderValue::from_static("v2"))
            .header("X-Idempotency-Key", delivery.idempotency_key)
            .header("X-Webhook-Signature", delivery.signature);
        if self.batch > 1 {
            request = request
                .header("X-Webhook-Batch", HeaderValue::from_static("true"))
                .header("X-Batch-Size", self.batch.to_string());
        }
        request.body(delivery.body)
    }
}

// ---------------------------------------------------------------------------------------------
// Sending and recording

/// The server's answer to an accepted delivery.
#[derive(Debug, Deserialize)]
struct DeliveryOutcome {
    stored: u64,
    duplicates: u64,
    quarantined: u64,
}

enum Outcome {
    Ok(Option<DeliveryOutcome>),
    Status(u16, String),
    Transport(&'static str, String),
}

async fn send(ctx: &Ctx, delivery: Delivery) -> Outcome {
    let request = ctx.generator.request(&ctx.client, &ctx.url, delivery);
    let response = match request.send().await {
        Ok(response) => response,
        Err(err) => return transport_error(&err),
    };
    let status = response.status();
    match response.bytes().await {
        Ok(body) if status == reqwest::StatusCode::OK => {
            Outcome::Ok(serde_json::from_slice(&body).ok())
        }
        Ok(body) => Outcome::Status(
            status.as_u16(),
            String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        ),
        Err(err) => transport_error(&err),
    }
}

fn transport_error(err: &reqwest::Error) -> Outcome {
    let kind = if err.is_connect() {
        "connect"
    } else if err.is_timeout() {
        "timeout"
    } else if err.is_body() || err.is_decode() {
        "body"
    } else {
        "request"
    };
    Outcome::Transport(kind, format!("{err:#}"))
}

#[derive(Default)]
struct Stats {
    /// Requests issued in the measured phase.
    sent: u64,
    ok: u64,
    /// Errors by status code ("401") or transport failure ("connect", "timeout", ...).
    errors: BTreeMap<String, u64>,
    /// First message seen for each error kind.
    error_examples: BTreeMap<String, String>,
    /// Latency of 200 responses, in microseconds.
    latencies_us: Vec<u64>,
    stored: u64,
    duplicates: u64,
    quarantined: u64,
    /// Responses that were 200 but whose body was not the expected outcome JSON.
    unparsed: u64,
    last_done: Option<Instant>,
    /// Every measured request: when it was scheduled (or sent), its latency, and its error kind
    /// if it failed.
    timeline: Vec<(Instant, Duration, Option<String>)>,
}

impl Stats {
    fn record(&mut self, outcome: Outcome, latency: Duration, done: Instant) {
        self.sent += 1;
        self.last_done = self.last_done.max(Some(done));
        let failure = match &outcome {
            Outcome::Ok(_) => None,
            Outcome::Status(code, _) => Some(code.to_string()),
            Outcome::Transport(kind, _) => Some((*kind).to_owned()),
        };
        self.timeline.push((done - latency, latency, failure));
        match outcome {
            Outcome::Ok(parsed) => {
                self.ok += 1;
                self.latencies_us
                    .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
                match parsed {
                    Some(o) => {
                        self.stored += o.stored;
                        self.duplicates += o.duplicates;
                        self.quarantined += o.quarantined;
                    }
                    None => self.unparsed += 1,
                }
            }
            Outcome::Status(code, body) => self.error(code.to_string(), body),
            Outcome::Transport(kind, message) => self.error(kind.to_owned(), message),
        }
    }

    fn error(&mut self, kind: String, example: String) {
        *self.errors.entry(kind.clone()).or_default() += 1;
        self.error_examples.entry(kind).or_insert(example);
    }

    fn merge(&mut self, other: Stats) {
        self.sent += other.sent;
        self.ok += other.ok;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        for (kind, example) in other.error_examples {
            self.error_examples.entry(kind).or_insert(example);
        }
        self.latencies_us.extend(other.latencies_us);
        self.timeline.extend(other.timeline);
        self.stored += other.stored;
        self.duplicates += other.duplicates;
        self.quarantined += other.quarantined;
        self.unparsed += other.unparsed;
        self.last_done = self.last_done.max(other.last_done);
    }

    fn transport_errors(&self) -> u64 {
        self.errors
            .iter()
            .filter(|(kind, _)| kind.parse::<u16>().is_err())
            .map(|(_, n)| n)
            .sum()
    }
}

/// `concurrency` workers, each sending its next delivery as soon as the previous one is
/// answered, until `end`. Requests started before `measure_start` are not counted.
async fn closed_loop(
    ctx: &Arc<Ctx>,
    concurrency: u32,
    measure_start: Instant,
    end: Instant,
) -> Result<Stats> {
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let ctx = Arc::clone(ctx);
        workers.spawn(async move {
            let mut stats = Stats::default();
            loop {
                let delivery = ctx.generator.build()?;
                let started = Instant::now();
                if started >= end {
                    break;
                }
                let outcome = send(&ctx, delivery).await;
                let done = Instant::now();
                if started >= measure_start {
                    stats.record(outcome, done - started, done);
                }
            }
            anyhow::Ok(stats)
        });
    }
    let mut total = Stats::default();
    while let Some(joined) = workers.join_next().await {
        total.merge(joined.context("a worker panicked")??);
    }
    Ok(total)
}

/// What the open-loop scheduler saw.
struct OpenLoop {
    rate: u64,
    /// Deliveries scheduled in the measured phase.
    scheduled: u64,
    /// Sent more than [`LATE_AFTER`] behind schedule.
    late: u64,
    /// Times a measured delivery found every in-flight slot busy and had to wait.
    slots_full: u64,
    /// How far behind schedule the scheduler was when the run ended.
    behind_at_end: Duration,
    /// Scheduled in the measured phase but never sent: the run ended first.
    skipped: u64,
    /// Sent time minus scheduled time, microseconds (timer jitter plus waiting for a slot).
    send_lag_us: Vec<u64>,
    /// Requests still in flight when the drain deadline passed.
    abandoned: u64,
}

/// Sends one delivery every 1/`rate` s from `origin` until `end`, with at most `concurrency` in
/// flight. Latency is measured from each delivery's scheduled time.
async fn open_loop(
    ctx: &Arc<Ctx>,
    rate: u64,
    concurrency: u32,
    drain_timeout: Duration,
    origin: Instant,
    measure_start: Instant,
    end: Instant,
) -> Result<(Stats, OpenLoop)> {
    let period_ns = 1e9 / rate as f64;
    // Computed from the index (not by adding periods) so the schedule does not drift.
    let scheduled_at = |i: u64| origin + Duration::from_nanos((i as f64 * period_ns) as u64);
    let slots = Arc::new(Semaphore::new(concurrency as usize));
    let (tx, mut rx) = mpsc::unbounded_channel::<(Outcome, Duration, Instant)>();
    let collector = tokio::spawn(async move {
        let mut stats = Stats::default();
        while let Some((outcome, latency, done)) = rx.recv().await {
            stats.record(outcome, latency, done);
        }
        stats
    });

    let mut open = OpenLoop {
        rate,
        scheduled: 0,
        late: 0,
        slots_full: 0,
        behind_at_end: Duration::ZERO,
        skipped: 0,
        send_lag_us: Vec::new(),
        abandoned: 0,
    };
    let mut i: u64 = 0;
    loop {
        let scheduled = scheduled_at(i);
        if scheduled >= end {
            break;
        }
        let measured = scheduled >= measure_start;
        if Instant::now() < scheduled {
            tokio::time::sleep_until(scheduled.into()).await;
        }
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if measured {
                    open.slots_full += 1;
                }
                tokio::select! {
                    permit = Arc::clone(&slots).acquire_owned() => {
                        permit.context("the in-flight limiter closed")?
                    }
                    _ = tokio::time::sleep_until(end.into()) => break,
                }
            }
        };
        let delivery = ctx.generator.build()?;
        if measured {
            open.scheduled += 1;
            let lag = Instant::now().saturating_duration_since(scheduled);
            if lag > LATE_AFTER {
                open.late += 1;
            }
            open.send_lag_us
                .push(u64::try_from(lag.as_micros()).unwrap_or(u64::MAX));
        }
        let ctx = Arc::clone(ctx);
        let tx = tx.clone();
        tokio::spawn(async move {
            let outcome = send(&ctx, delivery).await;
            let done = Instant::now();
            drop(permit);
            if measured {
                // The collector only stops once every sender is gone.
                let _ = tx.send((outcome, done - scheduled, done));
            }
        });
        i += 1;
    }
    // Everything scheduled in the measured phase that was not sent.
    if scheduled_at(i) < end {
        open.behind_at_end = end.saturating_duration_since(scheduled_at(i));
    }
    loop {
        let scheduled = scheduled_at(i);
        if scheduled >= end {
            break;
        }
        if scheduled >= measure_start {
            open.scheduled += 1;
            open.skipped += 1;
        }
        i += 1;
    }
    drop(tx);
    // Wait for the requests in flight (each is bounded by the client timeout).
    match tokio::time::timeout(drain_timeout, slots.acquire_many(concurrency)).await {
        Ok(permits) => drop(permits.context("the in-flight limiter closed")?),
        Err(_) => {
            open.abandoned = concurrency as u64 - slots.available_permits() as u64;
        }
    }
    let stats = if open.abandoned == 0 {
        collector.await.context("the result collector panicked")?
    } else {
        // Some tasks still hold senders: do not wait for them.
        collector.abort();
        bail!(
            "{} requests were still in flight {}s after the run ended",
            open.abandoned,
            drain_timeout.as_secs()
        );
    };
    Ok((stats, open))
}

/// Writes `--timeline`: one line per request, in time order, with Unix times computed from the
/// run's origin (so they line up with other processes' clocks to within the clock's own error).
fn write_timeline(
    path: &std::path::Path,
    timeline: &[(Instant, Duration, Option<String>)],
    origin: Instant,
    origin_unix: SystemTime,
) -> std::io::Result<()> {
    let origin_ms = origin_unix
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0;
    let mut rows: Vec<(f64, f64, &str)> = timeline
        .iter()
        .map(|(at, latency, failure)| {
            (
                origin_ms + at.saturating_duration_since(origin).as_secs_f64() * 1000.0,
                latency.as_secs_f64() * 1000.0,
                failure.as_deref().unwrap_or("ok"),
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (at_ms, latency_ms, status) in rows {
        writeln!(out, "{at_ms:.3} {latency_ms:.3} {status}")?;
    }
    out.flush()
}

/// CPU time used by this process (all threads), from /proc/self/stat. Linux only.
fn process_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every mainstream Linux configuration.
    Some((utime + stime) * 10_000_000)
}

// ---------------------------------------------------------------------------------------------
// Report

struct Report {
    mode: &'static str,
    url: String,
    run_id: String,
    concurrency: u32,
    batch: u32,
    duration_s: f64,
    warmup_s: f64,
    stats: Stats,
    open: Option<OpenLoop>,
    elapsed_s: f64,
    /// Generator CPU seconds and wall time since the measured phase began.
    generator_cpu: Option<(f64, Duration)>,
}

impl Report {
    fn new(
        args: &Args,
        ctx: &Ctx,
        mut stats: Stats,
        mut open: Option<OpenLoop>,
        measure_start: Instant,
        generator_cpu: Option<(f64, Duration)>,
    ) -> Report {
        stats.latencies_us.sort_unstable();
        if let Some(open) = open.as_mut() {
            open.send_lag_us.sort_unstable();
        }
        let elapsed_s = stats
            .last_done
            .map_or(0.0, |done| (done - measure_start).as_secs_f64());
        Report {
            mode: if open.is_some() {
                "open-loop"
            } else {
                "closed-loop"
            },
            url: ctx.url.to_string(),
            run_id: ctx.generator.run_id.clone(),
            concurrency: args.concurrency,
            batch: args.batch,
            duration_s: args.duration,
            warmup_s: args.warmup,
            stats,
            open,
            elapsed_s,
            generator_cpu,
        }
    }

    fn deliveries_per_s(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.stats.ok as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    fn latency_ms(&self) -> [(&'static str, Option<f64>); 5] {
        let l = &self.stats.latencies_us;
        let ms = |us: Option<u64>| us.map(|us| us as f64 / 1000.0);
        [
            ("p50", ms(percentile(l, 50.0))),
            ("p90", ms(percentile(l, 90.0))),
            ("p99", ms(percentile(l, 99.0))),
            ("p99.9", ms(percentile(l, 99.9))),
            ("max", ms(l.last().copied())),
        ]
    }

    fn to_text(&self) -> String {
        let mut out = String::new();
        let s = &self.stats;
        let rate = self
            .open
            .as_ref()
            .map_or(String::new(), |o| format!(", rate {}/s", o.rate));
        let _ = writeln!(
            out,
            "loadgen {} -> {} (concurrency {}{rate}, batch {}, {}s + {}s warm-up, run {})",
            self.mode,
            self.url,
            self.concurrency,
            self.batch,
            self.duration_s,
            self.warmup_s,
            self.run_id
        );
        let _ = writeln!(out, "  sent        {}", s.sent);
        let _ = writeln!(out, "  ok          {}", s.ok);
        let errors: u64 = s.errors.values().sum();
        if s.errors.is_empty() {
            let _ = writeln!(out, "  errors      0");
        } else {
            let by_kind: Vec<String> = s.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            let _ = writeln!(out, "  errors      {errors} ({})", by_kind.join(", "));
            for (kind, example) in &s.error_examples {
                let _ = writeln!(out, "    e.g. {kind}: {example}");
            }
        }
        let _ = writeln!(out, "  elapsed     {:.3} s", self.elapsed_s);
        let _ = writeln!(
            out,
            "  throughput  {:.1} deliveries/s, {:.1} events/s",
            self.deliveries_per_s(),
            self.deliveries_per_s() * f64::from(self.batch)
        );
        let latency: Vec<String> = self
            .latency_ms()
            .iter()
            .map(|(name, v)| match v {
                Some(v) => format!("{name} {v:.2}"),
                None => format!("{name} -"),
            })
            .collect();
        let from = if self.open.is_some() {
            "from scheduled send"
        } else {
            "from send"
        };
        let _ = writeln!(out, "  latency ms  {} ({from})", latency.join("  "));
        if let Some(open) = &self.open {
            let lag =
                |p: f64| percentile(&open.send_lag_us, p).map_or(0.0, |us| us as f64 / 1000.0);
            let _ = writeln!(
                out,
                "  schedule    {} scheduled, {} sent >{} ms late, {} skipped (unsent at the end, {:.3} s behind); all {} in-flight slots busy {} times; send lag p99 {:.2} ms, max {:.2} ms",
                open.scheduled,
                open.late,
                LATE_AFTER.as_millis(),
                open.skipped,
                open.behind_at_end.as_secs_f64(),
                self.concurrency,
                open.slots_full,
                lag(99.0),
                lag(100.0)
            );
        }
        let _ = writeln!(
            out,
            "  server      {} events stored, {} duplicates, {} quarantined{}",
            s.stored,
            s.duplicates,
            s.quarantined,
            if s.unparsed > 0 {
                format!(", {} unreadable answers", s.unparsed)
            } else {
                String::new()
            }
        );
        if let Some((cpu, wall)) = self.generator_cpu {
            let _ = writeln!(
                out,
                "  generator   {cpu:.2} s CPU in {:.2} s ({:.0}% of one core)",
                wall.as_secs_f64(),
                cpu / wall.as_secs_f64().max(1e-9) * 100.0
            );
        }
        out
    }

    fn to_json(&self) -> serde_json::Value {
        let s = &self.stats;
        let latency: serde_json::Map<String, serde_json::Value> = self
            .latency_ms()
            .iter()
            .map(|(name, v)| (name.to_string(), json!(v)))
            .collect();
        let mut value = json!({
            "mode": self.mode,
            "url": self.url,
            "run_id": self.run_id,
            "concurrency": self.concurrency,
            "batch": self.batch,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "sent": s.sent,
            "ok": s.ok,
            "errors": s.errors.values().sum::<u64>(),
            "errors_by_kind": s.errors,
            "error_examples": s.error_examples,
            "elapsed_s": self.elapsed_s,
            "deliveries_per_s": self.deliveries_per_s(),
            "events_per_s": self.deliveries_per_s() * f64::from(self.batch),
            "latency_ms": latency,
            "events_stored": s.stored,
            "events_duplicate": s.duplicates,
            "events_quarantined": s.quarantined,
            "generator_cpu_s": self.generator_cpu.map(|(cpu, _)| cpu),
            "generator_wall_s": self.generator_cpu.map(|(_, wall)| wall.as_secs_f64()),
        });
        if let (Some(open), Some(map)) = (&self.open, value.as_object_mut()) {
            let lag = |p: f64| percentile(&open.send_lag_us, p).map(|us| us as f64 / 1000.0);
            map.insert("rate".into(), json!(open.rate));
            map.insert("scheduled".into(), json!(open.scheduled));
            map.insert("late".into(), json!(open.late));
            map.insert("slots_full".into(), json!(open.slots_full));
            map.insert(
                "behind_at_end_s".into(),
                json!(open.behind_at_end.as_secs_f64()),
            );
            map.insert("skipped".into(), json!(open.skipped));
            map.insert(
                "send_lag_ms".into(),
                json!({ "p99": lag(99.0), "max": lag(100.0) }),
            );
        }
        value
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}
