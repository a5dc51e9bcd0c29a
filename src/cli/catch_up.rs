//! `switchboard catch-up [--since DURATION] [--dry-run] [--json]`: reads Kapso's message history
//! for every number-scoped webhook and stores what switchboard missed (as `serve` does at
//! startup and every `catch_up.interval`), then prints what it found per number.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use super::table::print_table;
use crate::catch_up::{self, RunOptions};
use crate::config::catch_up::age_ms;
use crate::config::retention::Age;

#[derive(Debug, Args)]
pub struct CatchUpArgs {
    /// Config file. Without it, the embedded development config is used.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Read from this long ago (e.g. "30m", "6h", "2d") instead of each number's checkpoint.
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// List and count only: store nothing, move no checkpoint.
    #[arg(long)]
    pub dry_run: bool,
    /// JSON output: `{"dry_run", "numbers": [{phone_number_id, webhook, since, pages, seen, new,
    /// already_stored, skipped, error}]}`.
    #[arg(long)]
    pub json: bool,
}

pub async fn catch_up(config: &crate::config::Config, args: CatchUpArgs) -> anyhow::Result<()> {
    let since_ms = match &args.since {
        None => None,
        Some(text) => match Age::parse(text) {
            Ok(age @ Age(Some(_))) => Some(age_ms(age)),
            Ok(Age(None)) => {
                bail!("--since {text}: give a duration such as \"30m\", \"6h\" or \"2d\"")
            }
            Err(message) => bail!("--since: {message}"),
        },
    };
    if catch_up::targets(config).is_empty() {
        bail!("no webhook in the config has a phone_number_id (catch-up reads each number's history): add `phone_number_id` to a [[webhooks]] entry");
    }
    let report = catch_up::run_standalone(
        config,
        RunOptions {
            since_ms,
            dry_run: args.dry_run,
        },
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let new = if args.dry_run { "WOULD STORE" } else { "NEW" };
        let rows = report
            .numbers
            .iter()
            .map(|n| {
                vec![
                    n.phone_number_id.clone(),
                    n.webhook.clone(),
                    n.since.clone(),
                    n.pages.to_string(),
                    n.seen.to_string(),
                    n.new.to_string(),
                    n.new_statuses.to_string(),
                    n.already_stored.to_string(),
                    n.recent.to_string(),
                    n.error.clone().unwrap_or_else(|| "ok".to_owned()),
                ]
            })
            .collect();
        print_table(
            &[
                "NUMBER", "WEBHOOK", "SINCE", "PAGES", "SEEN", new, "STATUSES", "ALREADY", "RESULT",
            ],
            rows,
        );
        for warning in report
            .numbers
            .iter()
            .filter_map(|n| n.delivery_problem.as_ref())
        {
            println!("warning: {warning}");
        }
    }
    if report.result() != "ok" {
        bail!("catch-up did not read every number's history to the end (see RESULT)");
    }
    Ok(())
}
