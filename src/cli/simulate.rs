//! `switchboard simulate`: posts realistic Kapso events (`kapso_sim::samples`) to a running
//! server exactly as Kapso would: the webhook's first secret signs the raw bytes, Kapso's headers
//! are set, batches use Kapso's envelope, and a failed delivery is retried on Kapso's schedule.
//! A server that cannot be reached at all fails at once (unless `--retry-unreachable`).
//! Message ids are derived from the arguments, so posting the same thing twice shows the dedupe.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::table::print_table;
use crate::config::Config;
use crate::kapso_sim::deliver::{
    deliver, DeliveryAttempt, DeliveryOptions, DeliveryReport, DeliveryTarget, RetryHook,
};
use crate::kapso_sim::samples::{self, MessageStatus, SampleContext};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Config file with the [[webhooks]] entry (its secret signs the deliveries) and
    /// server.listen. Without it, the embedded development config is used.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// The `[[webhooks]]` entry to deliver to; its first secret signs the deliveries.
    #[arg(long)]
    pub webhook: String,
    /// Event type (`X-Webhook-Event`), e.g. whatsapp.message.received or whatsapp.message.failed.
    #[arg(long, default_value = samples::MESSAGE_RECEIVED)]
    pub event: String,
    /// Message text (of a received message, or of the outbound message a status is about).
    #[arg(long)]
    pub text: Option<String>,
    /// How many events (one conversation; message ids 1..N).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub count: u16,
    /// Send all events in one Kapso batch (`X-Webhook-Batch: true`) instead of one delivery each.
    #[arg(long)]
    pub batch: bool,
    /// Where to post. Default: http://{server.listen}/webhooks/{NAME} (loopback for 0.0.0.0).
    #[arg(long)]
    pub url: Option<String>,
    /// `phone_number_id` in the payloads. Default: the webhook's, else the samples' number.
    #[arg(long)]
    pub phone_number_id: Option<String>,
    /// Conversation id in the payloads (default: derived from the other arguments).
    #[arg(long)]
    pub conversation: Option<String>,
    /// Seconds to wait before each retry of a delivery that got no 2xx, as Kapso does.
    #[arg(long, value_delimiter = ',', default_value = "10,40,90")]
    pub retry_delays: Vec<u64>,
    /// One attempt per delivery.
    #[arg(long, conflicts_with = "retry_delays")]
    pub no_retries: bool,
    /// Retry on the --retry-delays schedule also when the server cannot be reached (connection
    /// refused, DNS failure, no connection within 2 s), e.g. while it starts. Without it such a
    /// delivery fails at once.
    #[arg(long, conflicts_with = "no_retries")]
    pub retry_unreachable: bool,
    /// JSON output, one array of delivery reports.
    #[arg(long)]
    pub json: bool,
}

pub async fn simulate(config: &Config, args: SimulateArgs) -> anyhow::Result<()> {
    let webhook = config
        .webhooks
        .iter()
        .find(|w| w.name == args.webhook)
        .with_context(|| {
            let names: Vec<&str> = config.webhooks.iter().map(|w| w.name.as_str()).collect();
            format!(
                "no webhook named `{}` in the config (configured: {})",
                args.webhook,
                names.join(", ")
            )
        })?;
    let secret = webhook
        .secrets
        .first()
        .context("the webhook has no secret to sign with")?;
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| default_url(config.server.listen, &webhook.name));
    // Kapso adds the webhook's custom headers to every delivery.
    let target = DeliveryTarget {
        url: url.clone(),
        secret: Some(secret.clone()),
        headers: webhook
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let phone_number_id = args
        .phone_number_id
        .clone()
        .or_else(|| webhook.phone_number_id.clone())
        .unwrap_or_else(|| SampleContext::default().phone_number_id);
    let delays = if args.no_retries {
        Vec::new()
    } else {
        args.retry_delays.clone()
    };
    let opts = DeliveryOptions {
        batch: args.batch,
        retry_delays: delays.iter().copied().map(Duration::from_secs).collect(),
        retry_unreachable: args.retry_unreachable,
        on_retry: Some(RetryHook(Arc::new(announce_retry))),
        ..DeliveryOptions::default()
    };
    let payloads = sample_payloads(&args, &phone_number_id)?;
    if !args.json {
        let retries = if delays.is_empty() {
            "no retries".to_owned()
        } else {
            let list: Vec<String> = delays.iter().map(|d| format!("{d}s")).collect();
            format!("retries after {}", list.join(", "))
        };
        println!(
            "posting {} {} to {url} (signed; {retries})",
            payloads.len(),
            args.event
        );
    }
    let deliveries: Vec<Vec<Value>> = if args.batch {
        vec![payloads]
    } else {
        payloads.into_iter().map(|p| vec![p]).collect()
    };
    let http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .context("cannot build the HTTP client")?;
    let cancel = CancellationToken::new();
    let mut reports = Vec::new();
    for payloads in deliveries {
        let ids = message_ids(&payloads);
        let report = deliver(&http, &target, &args.event, payloads, &opts, &cancel).await?;
        if let Some(error) = unreachable(&report).filter(|_| !args.retry_unreachable) {
            bail!(
                "cannot reach {url}: {error}. Is switchboard running? Start it with `switchboard serve`, point --url at it, or pass --retry-unreachable to keep retrying on Kapso's schedule"
            );
        }
        reports.push((report, ids));
    }
    print_reports(&reports, args.json)?;
    let failed: Vec<&DeliveryReport> = reports
        .iter()
        .map(|(r, _)| r)
        .filter(|r| !r.succeeded())
        .collect();
    if let Some(last) = failed.last() {
        bail!(
            "{} of {} deliveries were not accepted by {url}; last: {}",
            failed.len(),
            reports.len(),
            last_answer(last)
        );
    }
    Ok(())
}

/// How long a connection may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The error of a delivery whose last attempt reached no server.
fn unreachable(report: &DeliveryReport) -> Option<&str> {
    let last = report.attempts.last().filter(|a| a.unreachable)?;
    let error = last.error.as_deref().unwrap_or("no connection");
    Some(error.strip_prefix("cannot connect: ").unwrap_or(error))
}

/// One line on stderr before each retry's wait, so a retrying delivery is never silent.
fn announce_retry(attempt: usize, failed: &DeliveryAttempt, wait: Duration) {
    let outcome = match (failed.status, &failed.error) {
        (Some(status), _) => format!("HTTP {status}"),
        (None, Some(error)) => error.clone(),
        (None, None) => "no answer".to_owned(),
    };
    eprintln!(
        "attempt {attempt} failed ({outcome}); retrying in {} s as Kapso would (--no-retries to stop)",
        wait.as_secs_f64()
    );
}

/// `http://{listen}/webhooks/{name}`, reaching a wildcard listen address over loopback.
fn default_url(listen: SocketAddr, name: &str) -> String {
    format!(
        "http://{}/webhooks/{name}",
        super::healthcheck::loopback(listen)
    )
}

fn short_hash(text: &str) -> String {
    hex::encode_upper(&Sha256::digest(text.as_bytes())[..8])
}

/// The events to send: ids derive from the arguments, the timestamp is now.
fn sample_payloads(args: &SimulateArgs, phone_number_id: &str) -> anyhow::Result<Vec<Value>> {
    let seed = format!(
        "{}|{}|{}|{}",
        args.event,
        args.text.as_deref().unwrap_or(""),
        phone_number_id,
        args.conversation.as_deref().unwrap_or("")
    );
    let hash = short_hash(&seed);
    let conversation = args
        .conversation
        .clone()
        .unwrap_or_else(|| format!("conv-sim-{}", hash.to_lowercase()));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let count = usize::from(args.count);
    let mut payloads = Vec::with_capacity(count);
    for i in 0..count {
        let ctx = SampleContext {
            phone_number_id: phone_number_id.to_owned(),
            conversation_id: if args.event.starts_with("whatsapp.conversation.") && i > 0 {
                format!("{conversation}-{}", i + 1)
            } else {
                conversation.clone()
            },
            timestamp: now + i as i64,
            ..SampleContext::default()
        };
        let wamid = format!("wamid.SIM{hash}{:03}", i + 1);
        let text = match (&args.text, count) {
            (Some(text), 1) => text.clone(),
            (Some(text), n) => format!("{text} ({}/{n})", i + 1),
            (None, _) => format!("Simulated message {} of {count}", i + 1),
        };
        payloads.push(sample(&args.event, &ctx, &wamid, &text, i == 0)?);
    }
    Ok(payloads)
}

fn sample(
    event: &str,
    ctx: &SampleContext,
    wamid: &str,
    text: &str,
    first: bool,
) -> anyhow::Result<Value> {
    let status = |s| samples::text_status_update(ctx, wamid, s, text);
    Ok(match event {
        samples::MESSAGE_RECEIVED => {
            let mut payload = samples::text_received(ctx, wamid, text);
            payload["is_new_conversation"] = json!(first);
            payload
        }
        samples::MESSAGE_SENT => status(MessageStatus::Sent),
        samples::MESSAGE_DELIVERED => status(MessageStatus::Delivered),
        samples::MESSAGE_READ => status(MessageStatus::Read),
        samples::MESSAGE_FAILED => status(MessageStatus::Failed),
        other if other.contains('.') => {
            let mut payload = samples::for_event(other, ctx, "simulated-project");
            if let Some(id) = payload.pointer_mut("/message/id") {
                *id = json!(wamid);
            }
            payload
        }
        other => bail!("`{other}` is not an event type such as whatsapp.message.received"),
    })
}

fn message_ids(payloads: &[Value]) -> Vec<String> {
    payloads
        .iter()
        .filter_map(|p| {
            p.pointer("/message/id")
                .or_else(|| p.pointer("/conversation/id"))
                .or_else(|| p.get("phone_number_id"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

/// The server's answer to the last attempt, parsed when it is JSON.
fn answer(report: &DeliveryReport) -> Value {
    let text = report.attempts.last().and_then(|a| a.response.as_deref());
    match text {
        Some(text) => serde_json::from_str(text).unwrap_or_else(|_| json!(text)),
        None => Value::Null,
    }
}

fn last_answer(report: &DeliveryReport) -> String {
    match report.attempts.last() {
        Some(attempt) => match (attempt.status, &attempt.error) {
            (Some(status), _) => format!("HTTP {status} {}", answer(report)),
            (None, Some(error)) => error.clone(),
            (None, None) => "no answer".to_owned(),
        },
        None => "not attempted".to_owned(),
    }
}

fn print_reports(reports: &[(DeliveryReport, Vec<String>)], json: bool) -> anyhow::Result<()> {
    let count = |r: &DeliveryReport, key: &str| answer(r).get(key).and_then(Value::as_u64);
    if json {
        let listed: Vec<Value> = reports
            .iter()
            .map(|(r, ids)| {
                let attempts: Vec<Value> = r
                    .attempts
                    .iter()
                    .map(|a| json!({"status": a.status, "error": a.error, "elapsed_ms": a.elapsed.as_millis() as u64}))
                    .collect();
                json!({
                    "url": r.url, "event_type": r.event_type, "events": ids.len(),
                    "ids": ids, "idempotency_key": r.idempotency_key, "accepted": r.succeeded(),
                    "status": r.final_status, "attempts": attempts, "answer": answer(r),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(());
    }
    let show = |n: Option<u64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
    let rows = reports
        .iter()
        .enumerate()
        .map(|(i, (r, ids))| {
            vec![
                (i + 1).to_string(),
                r.event_type.clone(),
                ids.len().to_string(),
                r.attempts.len().to_string(),
                r.final_status
                    .map_or_else(|| "no answer".to_owned(), |s| s.to_string()),
                show(count(r, "stored")),
                show(count(r, "duplicates")),
                ids.join(" "),
            ]
        })
        .collect();
    print_table(
        &[
            "#",
            "EVENT",
            "EVENTS",
            "ATTEMPTS",
            "STATUS",
            "STORED",
            "DUPLICATES",
            "IDS",
        ],
        rows,
    );
    let total = |key| {
        reports
            .iter()
            .filter_map(|(r, _)| count(r, key))
            .sum::<u64>()
    };
    println!(
        "stored {} new event(s), {} duplicate(s) already in the inbox",
        total("stored"),
        total("duplicates")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_reached_over_loopback() {
        let url = default_url("0.0.0.0:8080".parse().unwrap(), "support");
        assert_eq!(url, "http://127.0.0.1:8080/webhooks/support");
        let url = default_url("[::]:9000".parse().unwrap(), "x");
        assert_eq!(url, "http://[::1]:9000/webhooks/x");
        let url = default_url("10.0.0.5:80".parse().unwrap(), "x");
        assert_eq!(url, "http://10.0.0.5:80/webhooks/x");
    }

    const PHONE: &str = "106540352242922";

    fn args(event: &str, count: u16) -> SimulateArgs {
        SimulateArgs {
            config: None,
            webhook: "support".into(),
            event: event.into(),
            text: Some("where is my order?".into()),
            count,
            batch: false,
            url: None,
            phone_number_id: None,
            conversation: None,
            retry_delays: Vec::new(),
            no_retries: true,
            retry_unreachable: false,
            json: false,
        }
    }

    #[test]
    fn the_same_arguments_give_the_same_ids_so_a_repeat_is_a_duplicate() {
        let first = sample_payloads(&args(samples::MESSAGE_RECEIVED, 3), PHONE).unwrap();
        let again = sample_payloads(&args(samples::MESSAGE_RECEIVED, 3), PHONE).unwrap();
        assert_eq!(message_ids(&first), message_ids(&again));
        assert_eq!(first[0]["is_new_conversation"], true);
        assert_eq!(first[1]["is_new_conversation"], false);
        assert_eq!(
            first[2]["message"]["text"]["body"],
            "where is my order? (3/3)"
        );
        assert_eq!(
            first[0]["conversation"]["id"],
            first[2]["conversation"]["id"]
        );
        let other = sample_payloads(
            &SimulateArgs {
                text: Some("another question".into()),
                ..args(samples::MESSAGE_RECEIVED, 1)
            },
            PHONE,
        )
        .unwrap();
        assert_ne!(message_ids(&other)[0], message_ids(&first)[0]);
    }

    #[test]
    fn failed_status_carries_the_re_engagement_error() {
        let payloads = sample_payloads(&args(samples::MESSAGE_FAILED, 1), PHONE).unwrap();
        let status = &payloads[0]["message"]["kapso"]["statuses"][0];
        assert_eq!(status["status"], "failed");
        assert_eq!(status["errors"][0]["code"], 131047);
        assert!(sample_payloads(&args("nonsense", 1), PHONE).is_err());
    }
}
