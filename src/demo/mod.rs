//! `switchboard demo`: the whole pipeline on this machine, with nothing to sign up for. It starts
//! the real server ([`App`]) on a fresh SQLite file and a [`SimulatedKapso`] on loopback, syncs
//! the webhooks of `config/demo.toml` against the sim, then plays a scripted scene through the
//! sim's webhook sender (see [`scene`]) and narrates each stage. Nothing leaves 127.0.0.1.

mod narrate;
mod scene;
mod server;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use rand::Rng;
use sqlx::SqlitePool;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::db;
use crate::inbox::store::{self as inbox_store, EventFilter};
use crate::jobs::store as job_store;
use crate::kapso::KapsoClient;
use crate::kapso_sim::samples::{SampleContext, MESSAGE_FAILED};
use crate::kapso_sim::{
    DeliveryOptions, DeliveryTarget, RecordedSend, SimConfig, SimPhoneNumber, SimulatedKapso,
};
use crate::sync::{sync_webhooks, SyncOptions};
use narrate::Narrator;
use scene::{within, Scene};
use server::DemoServer;

/// The demo's configuration, embedded so the binary runs from anywhere.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");
const DEMO_CONFIG_NAME: &str = "<embedded config/demo.toml>";

/// The shop's number in `config/demo.toml`, connected in the simulated Kapso project.
const PHONE_NUMBER_ID: &str = "106540352242922";
const DISPLAY_NUMBER: &str = "+1 555-000-9999";
/// The `[[webhooks]]` entry the scene delivers to.
const WEBHOOK: &str = "acme";

#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// The SQLite file to use; default: `switchboard.db` in a fresh temporary directory.
    pub db: Option<PathBuf>,
}

/// Runs the demo to completion. Fails naming the stage that did not happen in time.
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let say = Narrator;
    let run_id = hex::encode_upper(rand::thread_rng().gen::<[u8; 4]>());
    let db_path = match options.db {
        Some(path) => path,
        None => fresh_directory(&run_id)?.join("switchboard.db"),
    };
    let api_key = format!(
        "kapso_demo_{}",
        hex::encode(rand::thread_rng().gen::<[u8; 16]>())
    );
    let secret = format!(
        "whsec_demo_{}",
        hex::encode(rand::thread_rng().gen::<[u8; 16]>())
    );

    let sim = SimulatedKapso::start(SimConfig {
        api_key: api_key.clone(),
        phone_numbers: vec![SimPhoneNumber::new(PHONE_NUMBER_ID, DISPLAY_NUMBER)],
        ..SimConfig::default()
    })
    .await
    .context("starting the simulated Kapso on 127.0.0.1")?;
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding the demo server to 127.0.0.1")?;
    let server_url = format!("http://{}", listener.local_addr()?);
    let config = demo_config(&[
        ("SWITCHBOARD_DEMO_PUBLIC_URL", server_url.clone()),
        ("SWITCHBOARD_DEMO_DB", db_path.display().to_string()),
        ("SWITCHBOARD_DEMO_KAPSO_URL", sim.base_url()),
        ("SWITCHBOARD_DEMO_API_KEY", api_key),
        ("SWITCHBOARD_DEMO_WEBHOOK_SECRET", secret),
    ])?;

    say.title("switchboard demo: the real server and a simulated Kapso, all on 127.0.0.1");
    say.line(format!("database       {}", db_path.display()));
    say.line(format!("server         {server_url}"));
    say.line(format!(
        "Kapso (sim)    {}  (Platform API, Meta proxy, webhook sender)",
        sim.base_url()
    ));
    say.blank();
    say.line("webhook        Kapso POSTs each WhatsApp event (message received, failed, ...) to your URL, signed with a shared secret");
    say.line("Meta proxy     Kapso's pass-through to Meta's WhatsApp Cloud API: how switchboard sends messages as your number");
    say.line("wamid          WhatsApp's id of one message; status events (delivered, failed) name the message by it");

    let mut server = DemoServer::start(&config, listener).await?;
    let db = db::open_existing(&config.storage).await?;

    let played = play(&config, &sim, &db, &run_id, &say, &mut server).await;
    let stopped = server.stop().await;
    played?;
    stopped?;

    summary(&sim, &db, &say).await?;
    db.close().await;
    sim.shutdown().await;
    say.line(format!(
        "done in {:.1} s; the database stays at {}",
        started.elapsed().as_secs_f64(),
        db_path.display()
    ));
    say.line("the routes that ran:  config/demo.toml (built into the binary)");
    say.line(format!(
        "what it stored:       switchboard events list --db {}",
        shell_word(&db_path.display().to_string())
    ));
    Ok(())
}

/// `path` as one shell word: quoted when it holds anything but plain path characters.
fn shell_word(path: &str) -> String {
    let plain = !path.is_empty()
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:,@%".contains(&b));
    if plain {
        path.to_owned()
    } else {
        format!("'{}'", path.replace('\'', "'\\''"))
    }
}

/// `config/demo.toml` with its `${SWITCHBOARD_DEMO_*}` values filled from `values` only.
pub fn demo_config(values: &[(&str, String)]) -> anyhow::Result<Config> {
    let env = |var: &str| {
        values
            .iter()
            .find(|(name, _)| *name == var)
            .map(|(_, v)| v.clone())
    };
    Ok(Config::parse(DEMO_CONFIG_NAME, DEMO_CONFIG, env)?)
}

async fn play(
    config: &Config,
    sim: &SimulatedKapso,
    db: &SqlitePool,
    run_id: &str,
    say: &Narrator,
    server: &mut DemoServer,
) -> anyhow::Result<()> {
    let target = sync(config, sim, say).await?;
    let kapso = KapsoClient::new(&config.kapso)?;
    // The customer's story starts a quarter of an hour ago, so that the messages of the outage
    // scene are older than `catch_up.webhook_grace` when the server comes back.
    let now = time::OffsetDateTime::now_utc().unix_timestamp() - 15 * 60;
    let scene = Scene {
        sim,
        db,
        target,
        kapso,
        delivery: DeliveryOptions {
            // Kapso's 10 s / 40 s / 90 s schedule, scaled down.
            retry_delays: [100, 400, 900].map(Duration::from_millis).to_vec(),
            response_timeout: Duration::from_secs(5),
            ..DeliveryOptions::default()
        },
        customer: SampleContext {
            phone_number_id: PHONE_NUMBER_ID.to_owned(),
            conversation_id: format!("conv-demo-{}", run_id.to_lowercase()),
            timestamp: now,
            ..SampleContext::default()
        },
        run_id: run_id.to_owned(),
        window_ms: config.buffer.window_ms,
        say,
    };
    scene.play(server).await
}

/// Registers `[[webhooks]]` with the sim as `serve` would with Kapso, and returns the delivery
/// target Kapso now has for the demo webhook.
async fn sync(
    config: &Config,
    sim: &SimulatedKapso,
    say: &Narrator,
) -> anyhow::Result<DeliveryTarget> {
    say.scene(1, "Register the webhook with Kapso");
    let kapso = KapsoClient::new(&config.kapso)?;
    let options = SyncOptions {
        dry_run: false,
        prune: false,
    };
    let report = within("webhook sync", sync_webhooks(config, &kapso, &options))
        .await?
        .context("stage `webhooks synced`: syncing [[webhooks]] with the simulated Kapso")?;
    let lines = report.summary_lines();
    match lines.split_first() {
        Some((first, rest)) => {
            say.stage("webhooks synced", first);
            rest.iter().for_each(|line| say.more(line));
        }
        None => say.stage("webhooks synced", "nothing to change"),
    }
    let url = config
        .server
        .webhook_url(WEBHOOK)
        .context("server.public_url is missing from the demo config")?;
    let hook = sim
        .webhooks()
        .into_iter()
        .find(|h| h["url"] == url.as_str())
        .with_context(|| format!("stage `webhooks synced`: Kapso has no webhook for {url}"))?;
    let events: Vec<&str> = hook["events"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e.as_str()).collect())
        .unwrap_or_default();
    let events: Vec<&str> = events
        .iter()
        .map(|e| e.strip_prefix("whatsapp.").unwrap_or(e))
        .collect();
    say.more(format!("Kapso posts events of {DISPLAY_NUMBER} to {url}"));
    say.more(format!(
        "({}), signed with the webhook's secret",
        events.join(", ")
    ));
    Ok(DeliveryTarget {
        url,
        secret: hook["secret_key"].as_str().map(crate::secret::Secret::new),
        headers: Vec::new(),
    })
}

/// After the graceful shutdown every job has finished: what the inbox holds, and which messages
/// reached the customer: every send Kapso accepted, except those it later reported failed.
async fn summary(sim: &SimulatedKapso, db: &SqlitePool, say: &Narrator) -> anyhow::Result<()> {
    say.scene(7, "Summary");
    let events = inbox_store::list_events(
        db,
        &EventFilter {
            limit: 10_000,
            ..EventFilter::default()
        },
    )
    .await?;
    let jobs = job_store::count_by_state(db).await?;
    let jobs: Vec<String> = jobs
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    let backfilled = events
        .iter()
        .filter(|e| {
            e.flags
                .as_deref()
                .is_some_and(|f| f.split(',').any(|f| f == crate::event::FLAG_BACKFILLED))
        })
        .count();
    say.line(format!(
        "inbox: {} events stored (the retried delivery added none; {backfilled} recovered by catch-up); jobs: {}",
        events.len(),
        jobs.join(", ")
    ));
    // wamid → the error code Kapso reported.
    let mut failed: Vec<(String, String)> = Vec::new();
    for event in events.iter().filter(|e| e.event_type == MESSAGE_FAILED) {
        let (Some(wamid), Some(detail)) = (
            event.message_id.clone(),
            inbox_store::get_event(db, event.id).await?,
        ) else {
            continue;
        };
        let payload: serde_json::Value = serde_json::from_str(&detail.payload).unwrap_or_default();
        let code = payload
            .pointer("/message/kapso/statuses/0/errors/0/code")
            .map_or_else(|| "?".to_owned(), ToString::to_string);
        failed.push((wamid, code));
    }
    let failure_of = |send: &RecordedSend| {
        failed
            .iter()
            .find(|(wamid, _)| *wamid == send.wamid)
            .map(|(_, code)| code.clone())
    };
    let (undelivered, received): (Vec<RecordedSend>, Vec<RecordedSend>) = sim
        .sends()
        .into_iter()
        .filter(|send| !send.is_mark_read())
        .partition(|send| failure_of(send).is_some());
    say.line(format!(
        "the customer received {} messages:",
        received.len()
    ));
    for (i, send) in received.iter().enumerate() {
        say.line(format!(
            "  {}. {}  ({})",
            i + 1,
            narrate::message(send),
            send.wamid
        ));
    }
    say.line(format!(
        "not delivered, as Kapso reported by message.failed ({}):",
        undelivered.len()
    ));
    for send in &undelivered {
        say.line(format!(
            "  - {}  ({}): error {}; the `reengage` route sent the template instead",
            narrate::message(send),
            send.wamid,
            failure_of(send).unwrap_or_default()
        ));
    }
    ensure!(
        received.len() == 4 && undelivered.len() == 1,
        "expected 4 messages received by the customer and 1 not delivered, got {} and {}",
        received.len(),
        undelivered.len()
    );
    Ok(())
}

fn fresh_directory(run_id: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("switchboard-demo-{}", run_id.to_lowercase()));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the demo directory {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_database_path_is_printed_as_one_shell_word() {
        assert_eq!(
            shell_word("/tmp/demo-1/switchboard.db"),
            "/tmp/demo-1/switchboard.db"
        );
        assert_eq!(shell_word("/tmp/my demo/x.db"), "'/tmp/my demo/x.db'");
        assert_eq!(shell_word("/tmp/it's.db"), "'/tmp/it'\\''s.db'");
    }

    #[test]
    fn the_embedded_config_is_valid_once_filled() {
        let value = |s: &str| s.to_owned();
        let config = demo_config(&[
            ("SWITCHBOARD_DEMO_PUBLIC_URL", value("http://127.0.0.1:1")),
            ("SWITCHBOARD_DEMO_DB", value("/tmp/x.db")),
            ("SWITCHBOARD_DEMO_KAPSO_URL", value("http://127.0.0.1:2")),
            ("SWITCHBOARD_DEMO_API_KEY", value("k")),
            ("SWITCHBOARD_DEMO_WEBHOOK_SECRET", value("s")),
        ])
        .unwrap();
        assert_eq!(config.webhooks[0].name, WEBHOOK);
        assert_eq!(
            config.webhooks[0].phone_number_id.as_deref(),
            Some(PHONE_NUMBER_ID)
        );
        assert_eq!(
            config.storage.sqlite_path(),
            Some(Path::new("/tmp/x.db").to_path_buf())
        );
        assert!(demo_config(&[]).is_err(), "unfilled values are refused");
    }
}
