//! The quarantine page: deliveries (or batch elements) switchboard could not understand and kept
//! raw instead of routing, with the reason, newest first. Read with the admin API's
//! `list_quarantine`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::html::{escape, page, table, time};
use super::pages::{signed_in, Refusal};
use super::{html as respond, ConsoleState};
use crate::inbox::store as inbox_store;

/// Entries the page shows.
const LISTED: i64 = 100;
/// Characters of each body the page shows.
const EXCERPT: usize = 300;

pub async fn list(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let csrf = signed_in(&state, &headers, false)?;
    let entries = inbox_store::list_quarantine(&state.api.reads, LISTED).await?;
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|q| {
            vec![
                q.id.to_string(),
                escape(&time(q.received_at)),
                escape(&q.webhook),
                format!("<span class=\"reason\">{}</span>", escape(&q.reason)),
                escape(q.event_header.as_deref().unwrap_or("")),
                format!("{} bytes", q.body.len()),
                format!("<code class=\"body\">{}</code>", escape(&excerpt(&q.body))),
            ]
        })
        .collect();
    let empty = if rows.is_empty() {
        "<p class=\"notice\">Nothing is quarantined.</p>"
    } else {
        ""
    };
    let body = format!(
        "{empty}<p class=\"hint\">Bodies switchboard could not understand: kept raw, never routed, \
         deleted after <code>retention.quarantine</code>. <code>switchboard events show \
         --quarantined ID</code> prints a whole body.</p>{}",
        table(
            &["ID", "Received", "Webhook", "Reason", "Event", "Size", "Body",],
            &rows
        )
    );
    Ok(respond(
        StatusCode::OK,
        page("Quarantine", Some(&csrf), &body),
    ))
}

/// The start of `body` as text (bytes that are not UTF-8 shown as replacement characters).
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(EXCERPT).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}
