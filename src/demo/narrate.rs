//! How the demo talks: numbered scenes, one line per pipeline stage with the stage's name in a
//! fixed column ("delivered", "buffered", "routed", "replied" ...), and short renderings of
//! deliveries, jobs and the messages the simulated customer received. Output only; no I/O
//! besides stdout.

use std::fmt::Display;

use serde_json::Value;

use crate::jobs::store::JobRow;
use crate::kapso_sim::{DeliveryReport, RecordedSend};

/// Prints the demo's story on stdout.
#[derive(Debug, Default)]
pub struct Narrator;

impl Narrator {
    pub fn title(&self, text: impl Display) {
        println!("{text}");
    }

    pub fn scene(&self, number: usize, title: impl Display) {
        println!();
        println!("{number}. {title}");
    }

    /// One stage of the pipeline: its name, then what happened.
    pub fn stage(&self, stage: &str, text: impl Display) {
        println!("   {stage:<16}{text}");
    }

    /// A further line of the previous stage.
    pub fn more(&self, text: impl Display) {
        println!("   {:<16}{text}", "");
    }

    /// An empty line.
    pub fn blank(&self) {
        println!();
    }

    /// A plain line, indented like the stages.
    pub fn line(&self, text: impl Display) {
        println!("   {text}");
    }
}

/// Longest message text shown before it is cut with `…`.
const QUOTED_CHARS: usize = 200;

/// Text of a message on one line, shortened, in quotes.
pub fn quoted(text: &str) -> String {
    let flat = text.replace('\n', " / ");
    let mut chars = flat.chars();
    let short: String = chars.by_ref().take(QUOTED_CHARS).collect();
    if chars.next().is_some() {
        format!("\"{short}…\"")
    } else {
        format!("\"{short}\"")
    }
}

/// The server's answer to a delivery: `200 stored 1, duplicates 0 (1 attempt)`.
pub fn delivery_outcome(report: &DeliveryReport) -> String {
    let answer: Option<Value> = report
        .attempts
        .last()
        .and_then(|a| a.response.as_deref())
        .and_then(|text| serde_json::from_str(text).ok());
    let count = |key: &str| {
        answer
            .as_ref()
            .and_then(|a| a.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let status = report
        .final_status
        .map_or_else(|| "no answer".to_owned(), |s| s.to_string());
    let attempts = report.attempts.len();
    format!(
        "→ {status}: stored {}, duplicates {} ({attempts} attempt{})",
        count("stored"),
        count("duplicates"),
        if attempts == 1 { "" } else { "s" }
    )
}

/// What a job was: `greet → reply (job #1, 1 event)`.
pub fn job(job: &JobRow) -> String {
    let events = serde_json::from_str::<Vec<i64>>(&job.event_ids)
        .map(|ids| ids.len())
        .unwrap_or(0);
    format!(
        "{} → {} (job #{}, {} event{})",
        job.route,
        job.handler,
        job.id,
        events,
        if events == 1 { "" } else { "s" }
    )
}

/// The message a send carried, as the customer would see it.
pub fn message(send: &RecordedSend) -> String {
    let body = &send.body;
    match body.get("type").and_then(Value::as_str) {
        Some("text") => quoted(
            body.pointer("/text/body")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        ),
        Some("template") => {
            let name = body
                .pointer("/template/name")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let language = body
                .pointer("/template/language/code")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let params: Vec<&str> = body
                .pointer("/template/components/0/parameters")
                .and_then(Value::as_array)
                .map(|ps| ps.iter().filter_map(|p| p["text"].as_str()).collect())
                .unwrap_or_default();
            format!(
                "template `{name}` ({language}) with parameters [{}]",
                params.join(", ")
            )
        }
        Some(other) => format!("a {other} message"),
        None => "a read receipt".to_owned(),
    }
}

/// `+15550100200`, the recipient of a send.
pub fn recipient(send: &RecordedSend) -> String {
    send.body
        .get("to")
        .and_then(Value::as_str)
        .map_or_else(|| "?".to_owned(), |to| format!("+{to}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_flattened_and_shortened() {
        assert_eq!(quoted("a\nb"), "\"a / b\"");
        let long = "x".repeat(QUOTED_CHARS + 50);
        let shown = quoted(&long);
        assert!(shown.ends_with("…\""), "{shown}");
        assert_eq!(shown.chars().count(), QUOTED_CHARS + 3);
    }
}
