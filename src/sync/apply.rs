//! Carries out a [`Plan`] against Kapso, step by step, and reports what happened. A dry run
//! sends nothing. The first failing request stops the run: every step is idempotent as a
//! whole (the next sync plans again from what Kapso then has), so a retry converges.

use super::plan::{Change, Plan, Step};
use super::report::{Action, ReportEntry, SyncReport};
use super::SyncError;
use crate::kapso::KapsoClient;

/// Applies `plan`; with `dry_run`, only reports what it would do.
pub async fn apply(
    plan: Plan,
    kapso: &KapsoClient,
    dry_run: bool,
) -> Result<SyncReport, SyncError> {
    let mut entries = Vec::with_capacity(plan.steps.len());
    for step in plan.steps {
        let described = describe(&step);
        let Step {
            name,
            phone_number_id,
            url,
            mut webhook_id,
            change,
        } = step;
        let scope = phone_number_id.as_deref();
        let id = webhook_id.clone().unwrap_or_default();
        let failed = |verb: &str| {
            let described = described.clone();
            let verb = verb.to_owned();
            move |error| SyncError::Kapso {
                action: format!("{verb} {described}"),
                error,
            }
        };
        let action = match change {
            Change::Create(request) => {
                if !dry_run {
                    let created = kapso
                        .create_webhook(scope, &request)
                        .await
                        .map_err(failed("creating"))?;
                    tracing::info!(webhook.name = name.as_deref(), webhook.id = %created.id, phone_number_id = scope, "webhook sync: created");
                    webhook_id = Some(created.id);
                }
                Action::Created
            }
            Change::Update {
                patch,
                fields,
                reactivated,
            } => {
                if !dry_run {
                    kapso
                        .update_webhook(scope, &id, &patch)
                        .await
                        .map_err(failed("updating"))?;
                    tracing::info!(webhook.name = name.as_deref(), webhook.id = %id, phone_number_id = scope, fields = %fields.join(","), reactivated, "webhook sync: updated");
                }
                Action::Updated {
                    fields: fields.into_iter().map(str::to_owned).collect(),
                    reactivated,
                }
            }
            Change::Delete(reason) => {
                if !dry_run {
                    kapso
                        .delete_webhook(scope, &id)
                        .await
                        .map_err(failed("deleting"))?;
                    tracing::info!(webhook.name = name.as_deref(), webhook.id = %id, phone_number_id = scope, reason = ?reason, "webhook sync: deleted");
                }
                Action::Deleted { reason }
            }
            Change::Unchanged => Action::Unchanged,
            Change::Skip(reason) => Action::Skipped { reason },
            Change::KindConflict { remote, configured } => {
                tracing::warn!(webhook.name = name.as_deref(), webhook.id = %id, remote_kind = ?remote, configured_kind = ?configured,
                    "webhook sync: the webhook on Kapso has another kind, which cannot be changed in place; delete it on Kapso or sync with prune to replace it");
                Action::Conflict {
                    remote_kind: remote,
                    configured_kind: configured,
                }
            }
        };
        entries.push(ReportEntry {
            name,
            phone_number_id,
            url,
            webhook_id,
            action,
        });
    }
    Ok(SyncReport {
        dry_run,
        entries,
        foreign: plan.foreign,
        undecodable: Vec::new(),
    })
}

/// "webhook `support` (phone number 1065…)" or "unmanaged webhook <id> (project)", for errors.
fn describe(step: &Step) -> String {
    let scope = match &step.phone_number_id {
        Some(number) => format!("phone number {number}"),
        None => "project".to_owned(),
    };
    match (&step.name, &step.webhook_id) {
        (Some(name), Some(id)) => format!("webhook `{name}` ({scope}, id {id})"),
        (Some(name), None) => format!("webhook `{name}` ({scope})"),
        (None, id) => format!(
            "unmanaged webhook {} ({scope})",
            id.as_deref().unwrap_or(&step.url)
        ),
    }
}
