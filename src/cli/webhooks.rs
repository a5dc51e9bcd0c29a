//! `switchboard webhooks list|sync|test`: the webhooks Kapso has for the configured phone
//! numbers and project, made to match `[[webhooks]]`, and Kapso's test delivery.

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Value};

use super::table::print_table;
use crate::config::Config;
use crate::kapso::{KapsoClient, RemoteWebhook, WebhookKind};
use crate::router::EventPattern;
use crate::sync::{self, Ownership, SyncError, SyncOptions};

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Kapso's webhooks for the configured phone numbers and the project, each marked managed
    /// (by which [[webhooks]] entry), unmanaged (under public_url, in no entry) or foreign.
    List {
        /// JSON output, one array (never secrets).
        #[arg(long)]
        json: bool,
    },
    /// Make Kapso's webhooks match [[webhooks]]: create what is missing, patch what drifted,
    /// re-activate paused ones, delete duplicates. Safe to run again: it then changes nothing.
    Sync {
        /// Print the plan; send no changing request.
        #[arg(long)]
        dry_run: bool,
        /// Also delete unmanaged webhooks under {public_url}/webhooks/ (same as [sync] prune).
        #[arg(long)]
        prune: bool,
        /// The report as JSON (never secrets).
        #[arg(long)]
        json: bool,
    },
    /// Ask Kapso to send a signed sample event to the webhook of [[webhooks]] entry NAME.
    Test {
        /// The [[webhooks]] entry's name.
        name: String,
        /// Event type to send; default: the webhook's first event. It must be one the webhook
        /// subscribes to.
        #[arg(long = "event")]
        event: Option<String>,
        /// Test even when routes would answer the sample event through Kapso. Kapso does not
        /// mark test deliveries, so those routes treat it as a customer's and may send a real
        /// WhatsApp message to the sample's phone number.
        #[arg(long)]
        allow_sends: bool,
    },
}

pub async fn webhooks(config: &Config, command: WebhooksCommand) -> anyhow::Result<()> {
    let kapso = KapsoClient::new(&config.kapso).context("setting up the Kapso client")?;
    match command {
        WebhooksCommand::List { json } => list(config, &kapso, json).await,
        WebhooksCommand::Sync {
            dry_run,
            prune,
            json,
        } => {
            let options = SyncOptions { dry_run, prune };
            let report = sync::sync_webhooks(config, &kapso, &options).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                report.summary_lines().iter().for_each(|l| println!("{l}"));
            }
            let conflicts = report.conflicts().len();
            if conflicts > 0 {
                bail!(
                    "{conflicts} webhook{} on Kapso need{} you: its kind differs from the config (see `conflict` above)",
                    if conflicts == 1 { "" } else { "s" },
                    if conflicts == 1 { "s" } else { "" }
                );
            }
            Ok(())
        }
        WebhooksCommand::Test {
            name,
            event,
            allow_sends,
        } => test(config, &kapso, &name, event, allow_sends).await,
    }
}

async fn list(config: &Config, kapso: &KapsoClient, json: bool) -> anyhow::Result<()> {
    let remote = sync::remote_webhooks(config, kapso).await?;
    for odd in &remote.undecodable {
        eprintln!(
            "warning: Kapso listed a webhook switchboard cannot read: {} at {}: {}",
            odd.id.as_deref().unwrap_or("(no id)"),
            odd.url.as_deref().unwrap_or("(no url)"),
            odd.error
        );
    }
    let rows: Vec<(RemoteWebhook, Ownership)> = remote
        .webhooks
        .into_iter()
        .map(|hook| {
            let owner = sync::ownership(config, &hook);
            (hook, owner)
        })
        .collect();
    if json {
        let items: Vec<Value> = rows.iter().map(|(h, o)| listed_json(h, o)).collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    let table = rows
        .iter()
        .map(|(hook, owner)| {
            vec![
                hook.id.clone(),
                scope(hook.phone_number_id.as_deref()),
                kind_name(hook.kind()).to_owned(),
                if hook.active { "yes" } else { "PAUSED" }.to_owned(),
                hook.events.len().to_string(),
                hook.url.clone(),
                match owner {
                    Ownership::Managed(name) => format!("managed: {name}"),
                    Ownership::Unmanaged => "unmanaged".to_owned(),
                    Ownership::Foreign => "foreign".to_owned(),
                    Ownership::Unknown => "?".to_owned(),
                },
            ]
        })
        .collect();
    print_table(
        &[
            "WEBHOOK ID",
            "SCOPE",
            "KIND",
            "ACTIVE",
            "EVENTS",
            "URL",
            "SWITCHBOARD",
        ],
        table,
    );
    if config.server.public_url.is_none() {
        eprintln!("note: server.public_url is not set, so switchboard cannot tell which webhooks are its own");
    }
    Ok(())
}

fn listed_json(hook: &RemoteWebhook, owner: &Ownership) -> Value {
    let (ownership, name) = match owner {
        Ownership::Managed(name) => ("managed", Some(name.as_str())),
        Ownership::Unmanaged => ("unmanaged", None),
        Ownership::Foreign => ("foreign", None),
        Ownership::Unknown => ("unknown", None),
    };
    json!({
        "id": hook.id,
        "url": hook.url,
        "phone_number_id": hook.phone_number_id,
        "kind": hook.kind(),
        "active": hook.active,
        "events": hook.events,
        "payload_version": hook.payload_version,
        "buffer_enabled": hook.buffer_enabled,
        "buffer_window_seconds": hook.buffer_window_seconds,
        "max_buffer_size": hook.max_buffer_size,
        "buffer_events": hook.buffer_events,
        "inactivity_minutes": hook.inactivity_minutes,
        "headers": hook.headers,
        "created_at": hook.created_at,
        "updated_at": hook.updated_at,
        "ownership": ownership,
        "name": name,
    })
}

async fn test(
    config: &Config,
    kapso: &KapsoClient,
    name: &str,
    event: Option<String>,
    allow_sends: bool,
) -> anyhow::Result<()> {
    if !config.webhooks.iter().any(|w| w.name == name) {
        let names: Vec<&str> = config.webhooks.iter().map(|w| w.name.as_str()).collect();
        bail!(
            "no [[webhooks]] entry is named `{name}`; configured: {}",
            names.join(", ")
        );
    }
    let url = config
        .server
        .webhook_url(name)
        .ok_or(SyncError::NoPublicUrl)?;
    let remote = sync::remote_webhooks(config, kapso).await?;
    let Some(hook) = sync::managed_webhook(config, &remote.webhooks, name) else {
        bail!("Kapso has no webhook for `{name}` ({url}); run `switchboard webhooks sync` first");
    };
    if let Some(event) = &event {
        if hook.kind() == WebhookKind::Kapso && !hook.events.contains(event) {
            bail!(
                "webhook `{name}` on Kapso does not subscribe to `{event}` (Kapso would refuse the test); it subscribes to: {}",
                hook.events.join(", ")
            );
        }
    }
    let tested = event.as_deref().or(hook.events.first().map(String::as_str));
    let senders = routes_calling_kapso(config, name, tested);
    if !senders.is_empty() && !allow_sends {
        bail!(
            "routes {} would answer Kapso's test {} through Kapso: Kapso does not mark test deliveries, so the sample event is handled like a customer's and a real WhatsApp message may go to the sample's phone number. Test an event no such route handles (--event), try the routes with `switchboard simulate` (nothing leaves the machine), or pass --allow-sends to test anyway",
            senders.join(", "),
            tested.unwrap_or("delivery")
        );
    }
    kapso
        .test_webhook(&hook.id, event.as_deref())
        .await
        .with_context(|| format!("asking Kapso to test webhook `{name}` ({})", hook.id))?;
    let what = tested.unwrap_or("sample");
    println!(
        "Kapso queued a test {what} delivery to {} (webhook {}); it arrives signed at POST /webhooks/{name}",
        hook.url, hook.id
    );
    Ok(())
}

/// `name (handler)` of every route that calls Kapso (sends, marks read) and may take an event
/// of type `event` (any type when unknown) arriving at webhook `webhook`. Conditions on the
/// payload (`when.text`, ...) are not evaluated: the sample's content is Kapso's.
fn routes_calling_kapso(config: &Config, webhook: &str, event: Option<&str>) -> Vec<String> {
    config
        .routes
        .iter()
        .filter(|route| route.handler.calls_kapso())
        .filter(|route| {
            route.when.webhook.is_empty() || route.when.webhook.iter().any(|w| w == webhook)
        })
        .filter(|route| {
            event.is_none_or(|event| {
                route
                    .on
                    .iter()
                    .any(|on| EventPattern::parse(on).matches(event))
            })
        })
        .map(|route| format!("`{}` ({})", route.name, route.handler.kind()))
        .collect()
}

fn scope(phone_number_id: Option<&str>) -> String {
    phone_number_id.map_or_else(|| "project".to_owned(), str::to_owned)
}

fn kind_name(kind: WebhookKind) -> &'static str {
    match kind {
        WebhookKind::Kapso => "kapso",
        WebhookKind::Meta => "meta",
        WebhookKind::Unknown => "?",
    }
}
