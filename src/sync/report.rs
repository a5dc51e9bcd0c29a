//! [`SyncReport`]: what a sync did (or, in a dry run, would do) to each webhook, as JSON for
//! `--json` and as human lines. Holds ids, names, URLs and field names, never a secret.

use serde::Serialize;

use crate::kapso::{UndecodableWebhook, WebhookKind};

/// Why a webhook is (or would be) deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteReason {
    /// An older webhook for the same entry: Kapso would deliver every event twice.
    Duplicate,
    /// Under `{public_url}/webhooks/` but no entry describes it (pruning).
    Unmanaged,
    /// Its `kind` differs from the config's; it is recreated (pruning).
    KindChanged,
}

/// Why a webhook is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The entry says `sync = false`.
    SyncDisabled,
    /// Under `{public_url}/webhooks/` but no entry describes it, and pruning is off.
    Unmanaged,
    /// At the entry's URL, but its scope came as a `whatsapp_config_id` that no phone number
    /// of the project has: it may be this entry's webhook, so none is created beside it.
    ScopeUnknown,
    /// Kapso listed a webhook switchboard could not read that may be this entry's: none is
    /// created, so that a second one never appears (see `undecodable`).
    ListIncomplete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Created,
    Updated {
        /// Names of the patched fields (`events`, `active`, `secret_key`, ...).
        fields: Vec<String>,
        /// Kapso had paused it (`active: false`); it is active again.
        reactivated: bool,
    },
    Unchanged,
    Deleted {
        reason: DeleteReason,
    },
    Skipped {
        reason: SkipReason,
    },
    /// `kind` differs and Kapso cannot change it in place: the user must resolve it (delete the
    /// webhook on Kapso, or sync with prune to replace it).
    Conflict {
        remote_kind: WebhookKind,
        configured_kind: WebhookKind,
    },
}

impl Action {
    /// What this did to Kapso, as the `action` label of the sync's change counter:
    /// `created`, `reactivated`, `updated` or `deleted`; `None` when nothing changed.
    pub fn change_label(&self) -> Option<&'static str> {
        match self {
            Action::Created => Some("created"),
            Action::Updated {
                reactivated: true, ..
            } => Some("reactivated"),
            Action::Updated { .. } => Some("updated"),
            Action::Deleted { .. } => Some("deleted"),
            Action::Unchanged | Action::Skipped { .. } | Action::Conflict { .. } => None,
        }
    }
}

/// One webhook's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportEntry {
    /// The `[[webhooks]]` entry; `None` for an unmanaged webhook.
    pub name: Option<String>,
    /// `None`: project-scoped.
    pub phone_number_id: Option<String>,
    pub url: String,
    /// Kapso's id (for a create: the new one, or `None` in a dry run).
    pub webhook_id: Option<String>,
    #[serde(flatten)]
    pub action: Action,
}

/// The outcome of [`super::sync_webhooks`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Nothing was changed; the entries say what would have been.
    pub dry_run: bool,
    pub entries: Vec<ReportEntry>,
    /// Webhooks pointing elsewhere than `{public_url}/webhooks/`, never touched.
    pub foreign: usize,
    /// Elements of Kapso's lists that could not be read as webhooks.
    pub undecodable: Vec<UndecodableWebhook>,
}

impl SyncReport {
    /// Whether anything was (or, in a dry run, would be) created, updated or deleted.
    pub fn changed(&self) -> bool {
        self.entries.iter().any(|e| {
            matches!(
                e.action,
                Action::Created | Action::Updated { .. } | Action::Deleted { .. }
            )
        })
    }

    /// Entries the user has to resolve by hand.
    pub fn conflicts(&self) -> Vec<&ReportEntry> {
        self.entries
            .iter()
            .filter(|e| matches!(e.action, Action::Conflict { .. }))
            .collect()
    }

    /// One line per webhook plus a conclusion, for people; never contains a secret.
    pub fn summary_lines(&self) -> Vec<String> {
        let verb = |done: &str, planned: &str| {
            if self.dry_run {
                format!("would {planned}")
            } else {
                done.to_owned()
            }
        };
        let mut lines = Vec::new();
        for entry in &self.entries {
            let scope = match &entry.phone_number_id {
                Some(number) => format!("number {number}"),
                None => "project".to_owned(),
            };
            let name = entry.name.as_deref().unwrap_or("?");
            let id = entry.webhook_id.as_deref().unwrap_or("-");
            lines.push(match &entry.action {
                Action::Created => format!(
                    "{} `{name}` ({scope}) -> {}",
                    verb("created", "create"),
                    entry.url
                ),
                Action::Updated {
                    fields,
                    reactivated,
                } => format!(
                    "{} `{name}` ({scope}): {}{}",
                    verb("updated", "update"),
                    fields.join(", "),
                    if *reactivated {
                        " (re-activated: Kapso had paused it)"
                    } else {
                        ""
                    }
                ),
                Action::Unchanged => format!("unchanged `{name}` ({scope})"),
                Action::Deleted {
                    reason: DeleteReason::Duplicate,
                } => format!(
                    "{} duplicate of `{name}` ({scope}): webhook {id}; the newest is kept",
                    verb("deleted", "delete")
                ),
                Action::Deleted {
                    reason: DeleteReason::Unmanaged,
                } => format!(
                    "{} unmanaged {} ({scope}): webhook {id}, described by no [[webhooks]] entry",
                    verb("deleted", "delete"),
                    entry.url
                ),
                Action::Deleted {
                    reason: DeleteReason::KindChanged,
                } => format!(
                    "{} `{name}` ({scope}): webhook {id} has another kind; it is created again",
                    verb("deleted", "delete")
                ),
                Action::Skipped {
                    reason: SkipReason::SyncDisabled,
                } => format!("skipped `{name}` ({scope}): sync = false"),
                Action::Skipped {
                    reason: SkipReason::Unmanaged,
                } => format!(
                    "left unmanaged {} ({scope}): webhook {id}, described by no [[webhooks]] entry; --prune (or [sync] prune = true) deletes it",
                    entry.url
                ),
                Action::Skipped {
                    reason: SkipReason::ScopeUnknown,
                } => format!(
                    "left `{name}` ({scope}): webhook {id} at {} names its phone number by a whatsapp_config_id that no phone number of the project has; switchboard creates no second webhook beside it",
                    entry.url
                ),
                Action::Skipped {
                    reason: SkipReason::ListIncomplete,
                } => format!(
                    "not created `{name}` ({scope}): Kapso listed a webhook switchboard cannot read that may be this one; no second webhook is created (see the unreadable webhook below)"
                ),
                Action::Conflict {
                    remote_kind,
                    configured_kind,
                } => format!(
                    "conflict `{name}` ({scope}): webhook {id} has kind {} on Kapso but the config says {}, and Kapso cannot change a kind; delete it on Kapso, or sync with --prune to replace it",
                    kind_name(*remote_kind),
                    kind_name(*configured_kind)
                ),
            });
        }
        for odd in &self.undecodable {
            lines.push(format!(
                "unreadable webhook {} at {}: {}",
                odd.id.as_deref().unwrap_or("(no id)"),
                odd.url.as_deref().unwrap_or("(no url)"),
                odd.error
            ));
        }
        if self.foreign > 0 {
            let s = if self.foreign == 1 { "" } else { "s" };
            lines.push(format!(
                "{} webhook{s} pointing elsewhere left untouched",
                self.foreign
            ));
        }
        lines.push(match (self.changed(), self.dry_run) {
            (false, _) => "Kapso already matches the config: nothing to change".to_owned(),
            (true, true) => "dry run: nothing was changed".to_owned(),
            (true, false) => "Kapso now matches the config".to_owned(),
        });
        lines
    }
}

fn kind_name(kind: WebhookKind) -> &'static str {
    match kind {
        WebhookKind::Kapso => "kapso",
        WebhookKind::Meta => "meta",
        WebhookKind::Unknown => "(unknown)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: Action) -> ReportEntry {
        ReportEntry {
            name: Some("support".to_owned()),
            phone_number_id: Some("1".to_owned()),
            url: "https://bot.example.com/webhooks/support".to_owned(),
            webhook_id: Some("w-1".to_owned()),
            action,
        }
    }

    #[test]
    fn unchanged_report_says_nothing_changes() {
        let report = SyncReport {
            dry_run: false,
            entries: vec![entry(Action::Unchanged)],
            foreign: 2,
            undecodable: Vec::new(),
        };
        assert!(!report.changed());
        let lines = report.summary_lines();
        assert_eq!(lines[0], "unchanged `support` (number 1)");
        assert_eq!(lines[1], "2 webhooks pointing elsewhere left untouched");
        assert!(lines[2].contains("nothing to change"));
    }

    #[test]
    fn dry_run_lines_say_would() {
        let report = SyncReport {
            dry_run: true,
            entries: vec![entry(Action::Updated {
                fields: vec!["events".to_owned(), "active".to_owned()],
                reactivated: true,
            })],
            foreign: 0,
            undecodable: Vec::new(),
        };
        assert!(report.changed());
        let lines = report.summary_lines();
        assert_eq!(
            lines[0],
            "would update `support` (number 1): events, active (re-activated: Kapso had paused it)"
        );
        assert_eq!(lines[1], "dry run: nothing was changed");
    }

    #[test]
    fn json_has_a_flat_action_tag() {
        let report = SyncReport {
            dry_run: false,
            entries: vec![entry(Action::Deleted {
                reason: DeleteReason::Duplicate,
            })],
            foreign: 0,
            undecodable: Vec::new(),
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["entries"][0]["action"], "deleted");
        assert_eq!(json["entries"][0]["reason"], "duplicate");
        assert_eq!(json["entries"][0]["webhook_id"], "w-1");
    }
}
