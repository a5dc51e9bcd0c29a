//! `switchboard phone-numbers list`: the project's connected WhatsApp numbers from the Kapso
//! Platform API, every page, as a table or JSON. Their `phone_number_id` is what
//! `[[webhooks]] phone_number_id`, routes and `switchboard send` take.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use super::table::print_table;
use crate::config::Config;
use crate::kapso::{KapsoClient, PhoneNumber};

#[derive(Debug, Subcommand)]
pub enum PhoneNumbersCommand {
    /// Every phone number of the Kapso project (all pages).
    List {
        /// Config file. Without it, the embedded development config is used.
        #[arg(long, env = "SWITCHBOARD_CONFIG")]
        config: Option<PathBuf>,
        /// JSON output, one array.
        #[arg(long)]
        json: bool,
    },
}

pub async fn list(config: &Config, json: bool) -> anyhow::Result<()> {
    let client = KapsoClient::new(&config.kapso).context("setting up the Kapso client")?;
    let numbers = client
        .list_phone_numbers()
        .await
        .context("listing phone numbers (Kapso Platform API)")?;
    if json {
        let listed: Vec<serde_json::Value> = numbers.iter().map(as_json).collect();
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(());
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let rows = numbers
        .iter()
        .map(|n| {
            vec![
                n.phone_number_id.clone(),
                dash(&n.display_phone_number),
                n.name.clone(),
                dash(&n.verified_name),
                dash(&n.status),
                dash(&n.quality_rating),
                dash(&n.business_account_id),
            ]
        })
        .collect();
    print_table(
        &[
            "PHONE NUMBER ID",
            "NUMBER",
            "NAME",
            "VERIFIED NAME",
            "STATUS",
            "QUALITY",
            "WABA",
        ],
        rows,
    );
    Ok(())
}

/// The fields an operator needs, stable across Kapso adding new ones.
fn as_json(n: &PhoneNumber) -> serde_json::Value {
    json!({
        "phone_number_id": n.phone_number_id,
        "id": n.id,
        "internal_id": n.internal_id,
        "display_phone_number": n.display_phone_number,
        "name": n.name,
        "verified_name": n.verified_name,
        "status": n.status,
        "quality_rating": n.quality_rating,
        "business_account_id": n.business_account_id,
        "throughput_tier": n.throughput_tier,
        "created_at": n.created_at,
        "updated_at": n.updated_at,
    })
}
