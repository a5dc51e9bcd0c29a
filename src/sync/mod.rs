//! Webhook sync: makes the webhooks on Kapso match `[[webhooks]]` (CONTRACT §4.5). It lists
//! what Kapso has, plans with the pure [`plan::plan`] (create what is missing, PATCH only the
//! fields that drifted, keep the newest of duplicates, prune unmanaged ones on request) and
//! applies that plan ([`apply`]). Used by `serve` at startup ([`startup`]), by
//! `switchboard webhooks sync|list|test` and by `demo`.
//!
//! A remote webhook is switchboard's when its URL is `{server.public_url}/webhooks/{name}` and
//! its scope (phone number, or project) is the entry's. Other URLs under
//! `{public_url}/webhooks/` are "unmanaged"; anything else is "foreign" and never touched.

pub mod apply;
pub mod plan;
pub mod report;
pub mod startup;

use std::collections::{HashMap, HashSet};

use crate::config::{Config, WebhookConfig, WebhookKindConfig};
use crate::kapso::{
    KapsoClient, KapsoError, RemoteScope, RemoteWebhook, UndecodableWebhook, WebhookKind,
};
use plan::{BufferSettings, DesiredWebhook};

pub use report::{Action, DeleteReason, ReportEntry, SkipReason, SyncReport};
pub use startup::{
    run_startup_sync, runs_at_startup, LastSync, SyncReporting, SyncState, SyncStatus,
};

/// How [`sync_webhooks`] runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncOptions {
    /// Plan and report, but send no creating, updating or deleting request.
    pub dry_run: bool,
    /// Delete unmanaged webhooks (and replace ones whose kind differs). `[sync] prune = true`
    /// in the config turns this on as well.
    pub prune: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("server.public_url is not set: webhook sync needs the URL Kapso reaches this server at, e.g. public_url = \"https://bot.example.com\" in [server]")]
    NoPublicUrl,
    #[error("webhooks[{index}] `{name}` has no secret to register with Kapso; set `secrets`")]
    NoSecret { index: usize, name: String },
    #[error("phone number {phone_number_id} (webhooks[{index}].phone_number_id of `{name}`) is not in this Kapso project; check the id (`switchboard phone-numbers list` shows the project's numbers)")]
    UnknownPhoneNumber {
        index: usize,
        name: String,
        phone_number_id: String,
    },
    /// The Kapso error is part of the message (not a `source`, so `{:#}` does not repeat it).
    #[error("{action}: {error}")]
    Kapso {
        /// What was being done, e.g. "listing the project's webhooks".
        action: String,
        error: KapsoError,
    },
}

impl SyncError {
    /// The Kapso error underneath, if any.
    pub fn kapso(&self) -> Option<&KapsoError> {
        match self {
            SyncError::Kapso { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Makes Kapso's webhooks match the config and reports what changed. Idempotent: run again
/// right after, it changes nothing. Never prints or logs a secret.
pub async fn sync_webhooks(
    config: &Config,
    kapso: &KapsoClient,
    options: &SyncOptions,
) -> Result<SyncReport, SyncError> {
    let prefix = config
        .server
        .webhooks_prefix()
        .ok_or(SyncError::NoPublicUrl)?;
    let desired = desired_webhooks(config)?;
    let remote = remote_webhooks(config, kapso).await?;
    let prune = options.prune || config.sync.prune;
    let plan = plan::plan_with(
        &desired,
        &remote.webhooks,
        &remote.undecodable,
        &prefix,
        prune,
    );
    let mut report = apply::apply(plan, kapso, options.dry_run).await?;
    report.undecodable = remote.undecodable;
    Ok(report)
}

/// The webhooks the config wants on Kapso, in config order.
pub fn desired_webhooks(config: &Config) -> Result<Vec<DesiredWebhook>, SyncError> {
    config
        .webhooks
        .iter()
        .enumerate()
        .map(|(index, webhook)| {
            let url = config
                .server
                .webhook_url(&webhook.name)
                .ok_or(SyncError::NoPublicUrl)?;
            desired(webhook, url).ok_or_else(|| SyncError::NoSecret {
                index,
                name: webhook.name.clone(),
            })
        })
        .collect()
}

fn desired(webhook: &WebhookConfig, url: String) -> Option<DesiredWebhook> {
    let kapso = webhook.kind == WebhookKindConfig::Kapso;
    Some(DesiredWebhook {
        name: webhook.name.clone(),
        url,
        phone_number_id: webhook.phone_number_id.clone(),
        kind: if kapso {
            WebhookKind::Kapso
        } else {
            WebhookKind::Meta
        },
        events: webhook.effective_events(),
        active: webhook.active,
        payload_version: kapso.then(|| {
            webhook
                .payload_version
                .unwrap_or_default()
                .as_str()
                .to_owned()
        }),
        buffer: webhook
            .kapso_buffer
            .as_ref()
            .filter(|b| kapso && b.enabled)
            .map(|b| BufferSettings {
                window_seconds: b.window_seconds,
                max_size: b.max_size,
                events: b.events.clone(),
            }),
        headers: webhook.headers.clone(),
        inactivity_minutes: webhook.inactivity_minutes.filter(|_| kapso),
        secret: webhook.registered_secret()?.clone(),
        sync: webhook.sync,
    })
}

/// What Kapso lists: the webhooks it could decode, with their number scope resolved where
/// Kapso gave it as `whatsapp_config_id`, and the list elements it could not decode.
#[derive(Debug, Clone, Default)]
pub struct RemoteWebhooks {
    pub webhooks: Vec<RemoteWebhook>,
    pub undecodable: Vec<UndecodableWebhook>,
}

/// Every webhook Kapso has that concerns this config: those of each configured phone number
/// plus the project's list (which Kapso documents as holding all of the project's webhooks),
/// each once, whatever the number of pages. A webhook read through a number's route without a
/// `phone_number_id` is that number's; one that names its number only by `whatsapp_config_id`
/// gets the `phone_number_id` of the phone number whose `internal_id` that is (the phone-number
/// list is read only then). One list element that cannot be decoded does not fail the read: it
/// is returned in `undecodable`.
pub async fn remote_webhooks(
    config: &Config,
    kapso: &KapsoClient,
) -> Result<RemoteWebhooks, SyncError> {
    let mut seen = HashSet::new();
    let mut remote = RemoteWebhooks::default();
    let mut numbers = HashSet::new();
    for (index, webhook) in config.webhooks.iter().enumerate() {
        let Some(number) = webhook.phone_number_id.as_deref() else {
            continue;
        };
        if !numbers.insert(number) {
            continue;
        }
        let list = kapso
            .read_number_webhooks(number)
            .await
            .map_err(|error| match error {
                KapsoError::NotFound { .. } => SyncError::UnknownPhoneNumber {
                    index,
                    name: webhook.name.clone(),
                    phone_number_id: number.to_owned(),
                },
                error => SyncError::Kapso {
                    action: format!("listing the webhooks of phone number {number}"),
                    error,
                },
            })?;
        for mut hook in list.webhooks {
            if hook.phone_number_id.is_none() {
                hook.phone_number_id = Some(number.to_owned());
            }
            if seen.insert(hook.id.clone()) {
                remote.webhooks.push(hook);
            }
        }
        remote.undecodable.extend(list.undecodable);
    }
    let project = kapso
        .read_project_webhooks()
        .await
        .map_err(|error| SyncError::Kapso {
            action: "listing the project's webhooks".to_owned(),
            error,
        })?;
    remote.webhooks.extend(
        project
            .webhooks
            .into_iter()
            .filter(|h| seen.insert(h.id.clone())),
    );
    let known: HashSet<Option<&str>> = remote.undecodable.iter().map(|u| u.id.as_deref()).collect();
    let fresh: Vec<UndecodableWebhook> = project
        .undecodable
        .into_iter()
        .filter(|u| u.id.is_none() || !known.contains(&u.id.as_deref()))
        .collect();
    remote.undecodable.extend(fresh);
    resolve_config_ids(kapso, &mut remote.webhooks).await?;
    Ok(remote)
}

/// Gives each webhook scoped by `whatsapp_config_id` alone the `phone_number_id` of the phone
/// number with that `internal_id` (Kapso's configuration id). One left unresolved (no such
/// number in the project, or a phone-number list that cannot be decoded) keeps
/// `phone_number_id: None` and is never matched to an entry.
async fn resolve_config_ids(
    kapso: &KapsoClient,
    webhooks: &mut [RemoteWebhook],
) -> Result<(), SyncError> {
    if !webhooks
        .iter()
        .any(|h| matches!(h.scope(), RemoteScope::Config(_)))
    {
        return Ok(());
    }
    let numbers = match kapso.list_phone_numbers().await {
        Ok(numbers) => numbers,
        // Unresolved scopes are safe (nothing is created beside them); an odd phone-number
        // object must not stop the sync.
        Err(KapsoError::Decode { message }) => {
            tracing::warn!(error = %message, "webhook sync: the phone-number list could not be read; webhooks scoped by whatsapp_config_id stay unresolved");
            Vec::new()
        }
        Err(error) => {
            return Err(SyncError::Kapso {
                action: "listing the project's phone numbers (to read webhooks scoped by whatsapp_config_id)"
                    .to_owned(),
                error,
            })
        }
    };
    let by_config: HashMap<&str, &str> = numbers
        .iter()
        .flat_map(|n| {
            [
                (n.internal_id.as_str(), n.phone_number_id.as_str()),
                (n.phone_number_id.as_str(), n.phone_number_id.as_str()),
            ]
        })
        .collect();
    for hook in webhooks.iter_mut() {
        if let RemoteScope::Config(config) = hook.scope() {
            hook.phone_number_id = by_config.get(config).map(|n| (*n).to_owned());
        }
    }
    Ok(())
}

/// Whose a remote webhook is, seen from this config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Described by the `[[webhooks]]` entry of this name.
    Managed(String),
    /// Under `{public_url}/webhooks/`, described by no entry.
    Unmanaged,
    /// Points elsewhere; switchboard never touches it.
    Foreign,
    /// `server.public_url` is not set, so switchboard cannot tell.
    Unknown,
}

/// Classifies `remote` the way sync does.
pub fn ownership(config: &Config, remote: &RemoteWebhook) -> Ownership {
    let Some(prefix) = config.server.webhooks_prefix() else {
        return Ownership::Unknown;
    };
    let entry = config.webhooks.iter().find(|w| {
        config
            .server
            .webhook_url(&w.name)
            .is_some_and(|url| plan::same_url(&url, &remote.url))
            && plan::known_scope(remote) == Some(w.phone_number_id.as_deref())
    });
    match entry {
        Some(webhook) => Ownership::Managed(webhook.name.clone()),
        None if remote.url.starts_with(&prefix) => Ownership::Unmanaged,
        None => Ownership::Foreign,
    }
}

/// The remote webhook of entry `name` that Kapso delivers to (the newest, if duplicated).
pub fn managed_webhook<'a>(
    config: &Config,
    remote: &'a [RemoteWebhook],
    name: &str,
) -> Option<&'a RemoteWebhook> {
    let candidates = (0..remote.len())
        .filter(|&i| ownership(config, &remote[i]) == Ownership::Managed(name.to_owned()));
    plan::newest(remote, candidates).map(|i| &remote[i])
}
