//! The pure half of webhook sync: given the webhooks the config describes and the ones Kapso
//! has, decide what to create, patch (only the fields that differ), delete (duplicates, and
//! unmanaged ones when pruning) or leave alone. No I/O, so every rule is unit-tested.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::report::{DeleteReason, SkipReason};
use crate::kapso::{
    RemoteScope, RemoteWebhook, UndecodableWebhook, WebhookKind, WebhookPatch, WebhookRequest,
};
use crate::secret::Secret;

/// A webhook as the config wants it on Kapso.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredWebhook {
    /// The `[[webhooks]]` entry's name.
    pub name: String,
    /// `{public_url}/webhooks/{name}`.
    pub url: String,
    /// `None`: project-scoped.
    pub phone_number_id: Option<String>,
    pub kind: WebhookKind,
    /// Empty for `meta`.
    pub events: Vec<String>,
    pub active: bool,
    /// `None` for `meta`.
    pub payload_version: Option<String>,
    /// Kapso-side buffering; `None` means off.
    pub buffer: Option<BufferSettings>,
    pub headers: BTreeMap<String, String>,
    /// `None`: whatever Kapso has is fine.
    pub inactivity_minutes: Option<u32>,
    /// The first configured secret.
    pub secret: Secret,
    /// false: never touched on Kapso.
    pub sync: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferSettings {
    pub window_seconds: u32,
    pub max_size: u32,
    pub events: Vec<String>,
}

/// What to do, in order. Changing steps come first for each configured webhook (deletes of
/// duplicates before the create or patch), unmanaged webhooks last.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Webhooks pointing anywhere but `{public_url}/webhooks/`: never touched.
    pub foreign: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The config entry's name; `None` for an unmanaged webhook.
    pub name: Option<String>,
    pub phone_number_id: Option<String>,
    pub url: String,
    /// The remote webhook acted on; `None` before a create.
    pub webhook_id: Option<String>,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Create(Box<WebhookRequest>),
    Update {
        patch: Box<WebhookPatch>,
        fields: Vec<&'static str>,
        /// Kapso had it paused (`active: false`) and the config wants it on.
        reactivated: bool,
    },
    Unchanged,
    Delete(DeleteReason),
    Skip(SkipReason),
    /// `kind` differs and cannot be patched; nothing is done without prune.
    KindConflict {
        remote: WebhookKind,
        configured: WebhookKind,
    },
}

impl Change {
    /// Whether applying this step sends a changing request.
    pub fn changes_remote(&self) -> bool {
        matches!(
            self,
            Change::Create(_) | Change::Update { .. } | Change::Delete(_)
        )
    }
}

/// Plans a sync from a complete list (nothing undecodable); see [`plan_with`].
pub fn plan(
    desired: &[DesiredWebhook],
    remote: &[RemoteWebhook],
    managed_prefix: &str,
    prune: bool,
) -> Plan {
    plan_with(desired, remote, &[], managed_prefix, prune)
}

/// The scope a remote webhook is known to have: `Some(Some(number))`, `Some(None)` for the
/// project, `None` when it is named only by a `whatsapp_config_id` no phone number has.
pub fn known_scope(remote: &RemoteWebhook) -> Option<Option<&str>> {
    match remote.scope() {
        RemoteScope::Number(number) => Some(Some(number)),
        RemoteScope::Project => Some(None),
        RemoteScope::Config(_) => None,
    }
}

/// Plans a sync. `managed_prefix` is `{public_url}/webhooks/`: remote webhooks under it that no
/// entry describes are unmanaged (deleted only when `prune`); all others are foreign.
/// A remote webhook belongs to an entry when its URL (which names the entry) and its phone
/// number or project scope (which no Kapso PATCH can change) are the entry's.
///
/// Never creates a webhook that may already exist: an entry is not created while a webhook at
/// its URL has a scope that could not be resolved, or while `undecodable` holds an element at
/// its URL (or one without a readable URL). Such entries are skipped and reported instead.
/// A webhook whose `kind` Kapso did not state is taken to have the entry's kind (the OpenAPI
/// default is `kapso`); it is never flagged or replaced for its kind.
pub fn plan_with(
    desired: &[DesiredWebhook],
    remote: &[RemoteWebhook],
    undecodable: &[UndecodableWebhook],
    managed_prefix: &str,
    prune: bool,
) -> Plan {
    let mut claimed = vec![false; remote.len()];
    let mut steps = Vec::new();
    for wanted in desired {
        let at_url = |i: &usize| same_url(&remote[*i].url, &wanted.url);
        let matches: Vec<usize> = (0..remote.len())
            .filter(at_url)
            .filter(|&i| known_scope(&remote[i]) == Some(wanted.phone_number_id.as_deref()))
            .collect();
        let unresolved: Vec<usize> = (0..remote.len())
            .filter(at_url)
            .filter(|&i| known_scope(&remote[i]).is_none())
            .collect();
        for &i in matches.iter().chain(&unresolved) {
            claimed[i] = true;
        }
        let unreadable = undecodable.iter().any(|u| {
            u.url
                .as_deref()
                .is_none_or(|url| same_url(url, &wanted.url))
        });
        let step = |webhook_id: Option<&str>, change: Change| Step {
            name: Some(wanted.name.clone()),
            phone_number_id: wanted.phone_number_id.clone(),
            url: wanted.url.clone(),
            webhook_id: webhook_id.map(str::to_owned),
            change,
        };
        if !wanted.sync {
            if matches.is_empty() && unresolved.is_empty() {
                steps.push(step(None, Change::Skip(SkipReason::SyncDisabled)));
            }
            for &i in matches.iter().chain(&unresolved) {
                let id = Some(remote[i].id.as_str());
                steps.push(step(id, Change::Skip(SkipReason::SyncDisabled)));
            }
            continue;
        }
        for &i in &unresolved {
            let id = Some(remote[i].id.as_str());
            steps.push(step(id, Change::Skip(SkipReason::ScopeUnknown)));
        }
        let kind_fits = |i: usize| remote[i].kind.is_none_or(|k| k == wanted.kind);
        let same_kind = matches.iter().copied().filter(|&i| kind_fits(i));
        let keeper = newest(remote, same_kind).or_else(|| newest(remote, matches.iter().copied()));
        for &i in matches.iter().filter(|&&i| Some(i) != keeper) {
            let id = Some(remote[i].id.as_str());
            steps.push(step(id, Change::Delete(DeleteReason::Duplicate)));
        }
        let create = || {
            if !unresolved.is_empty() {
                Change::Skip(SkipReason::ScopeUnknown)
            } else if unreadable {
                Change::Skip(SkipReason::ListIncomplete)
            } else {
                Change::Create(Box::new(wanted.request()))
            }
        };
        match keeper {
            None => steps.push(step(None, create())),
            Some(i) if !kind_fits(i) => {
                let id = Some(remote[i].id.as_str());
                if prune {
                    steps.push(step(id, Change::Delete(DeleteReason::KindChanged)));
                    steps.push(step(None, create()));
                } else {
                    steps.push(step(
                        id,
                        Change::KindConflict {
                            remote: remote[i].kind(),
                            configured: wanted.kind,
                        },
                    ));
                }
            }
            Some(i) => {
                let (patch, fields) = wanted.drift(&remote[i]);
                let change = if fields.is_empty() {
                    Change::Unchanged
                } else {
                    Change::Update {
                        patch: Box::new(patch),
                        fields,
                        reactivated: wanted.active && !remote[i].active,
                    }
                };
                steps.push(step(Some(&remote[i].id), change));
            }
        }
    }
    let mut foreign = 0;
    for (hook, _) in remote.iter().zip(&claimed).filter(|(_, &c)| !c) {
        if !hook.url.starts_with(managed_prefix) {
            foreign += 1;
            continue;
        }
        let change = if prune {
            Change::Delete(DeleteReason::Unmanaged)
        } else {
            Change::Skip(SkipReason::Unmanaged)
        };
        steps.push(Step {
            name: None,
            phone_number_id: hook.phone_number_id.clone(),
            url: hook.url.clone(),
            webhook_id: Some(hook.id.clone()),
            change,
        });
    }
    Plan { steps, foreign }
}

/// URLs equal but for a trailing `/`.
pub fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The index of the most recently created of `candidates` (by `created_at`; on a tie or an
/// unreadable date, the one listed first, since Kapso lists newest first).
pub fn newest(remote: &[RemoteWebhook], candidates: impl Iterator<Item = usize>) -> Option<usize> {
    let created = |i: usize| {
        let text = remote[i].created_at.as_str();
        let parsed =
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(time::OffsetDateTime::unix_timestamp_nanos);
        (parsed, text)
    };
    candidates.fold(None, |best, i| match best {
        Some(b) if created(i) <= created(b) => Some(b),
        _ => Some(i),
    })
}

fn as_set(items: &[String]) -> BTreeSet<&str> {
    items.iter().map(String::as_str).collect()
}

impl DesiredWebhook {
    /// The create body: everything the config says, with our secret.
    pub fn request(&self) -> WebhookRequest {
        let mut request = WebhookRequest {
            url: self.url.clone(),
            secret_key: Some(self.secret.clone()),
            kind: Some(self.kind),
            active: Some(self.active),
            headers: (!self.headers.is_empty()).then(|| self.headers.clone()),
            ..WebhookRequest::default()
        };
        if self.kind == WebhookKind::Kapso {
            request.events = Some(self.events.clone());
            request.payload_version = self.payload_version.clone();
            request.inactivity_minutes = self.inactivity_minutes;
            if let Some(buffer) = &self.buffer {
                request.buffer_enabled = Some(true);
                request.buffer_window_seconds = Some(buffer.window_seconds);
                request.max_buffer_size = Some(buffer.max_size);
                request.buffer_events = Some(buffer.events.clone());
            }
        }
        request
    }

    /// The PATCH that makes `remote` match, and the names of the fields in it. Events are
    /// compared as sets; the secret only when Kapso returned it; `payload_version: null`
    /// counts as Kapso's default `v2`.
    pub fn drift(&self, remote: &RemoteWebhook) -> (WebhookPatch, Vec<&'static str>) {
        let mut patch = WebhookPatch::default();
        let mut fields = Vec::new();
        if remote.url != self.url {
            patch.url = Some(self.url.clone());
            fields.push("url");
        }
        if self.kind == WebhookKind::Kapso {
            if as_set(&remote.events) != as_set(&self.events) {
                patch.events = Some(self.events.clone());
                fields.push("events");
            }
            let version = remote.payload_version.as_deref().unwrap_or("v2");
            if let Some(wanted) = &self.payload_version {
                if version != wanted {
                    patch.payload_version = Some(Some(wanted.clone()));
                    fields.push("payload_version");
                }
            }
            self.buffer_drift(remote, &mut patch, &mut fields);
            if let Some(minutes) = self.inactivity_minutes {
                if remote.inactivity_minutes != Some(minutes) {
                    patch.inactivity_minutes = Some(Some(minutes));
                    fields.push("inactivity_minutes");
                }
            }
        }
        if remote.active != self.active {
            patch.active = Some(self.active);
            fields.push("active");
        }
        let remote_headers = remote.headers.clone().unwrap_or_default();
        let wanted_headers: BTreeMap<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        if remote_headers != wanted_headers {
            patch.headers = Some(Some(self.headers.clone()));
            fields.push("headers");
        }
        if remote
            .secret_key
            .as_ref()
            .is_some_and(|s| s != &self.secret)
        {
            patch.secret_key = Some(Some(self.secret.clone()));
            fields.push("secret_key");
        }
        (patch, fields)
    }

    fn buffer_drift(
        &self,
        remote: &RemoteWebhook,
        patch: &mut WebhookPatch,
        fields: &mut Vec<&'static str>,
    ) {
        let remote_on = remote.buffer_enabled == Some(true);
        let Some(buffer) = &self.buffer else {
            if remote_on {
                patch.buffer_enabled = Some(false);
                fields.push("buffer_enabled");
            }
            return;
        };
        if !remote_on {
            patch.buffer_enabled = Some(true);
            fields.push("buffer_enabled");
        }
        if remote.buffer_window_seconds != Some(buffer.window_seconds) {
            patch.buffer_window_seconds = Some(Some(buffer.window_seconds));
            fields.push("buffer_window_seconds");
        }
        if remote.max_buffer_size != Some(buffer.max_size) {
            patch.max_buffer_size = Some(Some(buffer.max_size));
            fields.push("max_buffer_size");
        }
        if as_set(&remote.buffer_events) != as_set(&buffer.events) {
            patch.buffer_events = Some(buffer.events.clone());
            fields.push("buffer_events");
        }
    }
}

#[cfg(test)]
mod tests;
