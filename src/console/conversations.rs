//! Conversation pages: the conversations seen most recently, and one conversation's timeline
//! (the customer's messages and ours in the order they happened, each of ours with its latest
//! status, and whether the 24-hour window is open), read through the admin API's
//! [`ConversationView`]: one implementation, two surfaces.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::html::{escape, page, path_segment, table, time};
use super::pages::{signed_in, Refusal};
use super::{html as respond, ConsoleState};
use crate::admin_api::ConversationView;
use crate::inbox::timeline::{self, TimelineEvent};
use crate::jobs::store::OutboundRow;

/// Conversations the list shows.
const LISTED: i64 = 100;

/// A link to conversation `id`'s timeline (the id escaped as text, encoded in the URL).
pub fn link(id: &str) -> String {
    format!(
        "<a href=\"/admin/conversations/{}\">{}</a>",
        path_segment(id),
        escape(id)
    )
}

pub async fn list(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let csrf = signed_in(&state, &headers, false)?;
    let conversations = timeline::recent_conversations(&state.api.reads, LISTED).await?;
    let rows: Vec<Vec<String>> = conversations
        .iter()
        .map(|c| {
            vec![
                link(&c.conversation_id),
                escape(c.phone_number_id.as_deref().unwrap_or("")),
                escape(&time(c.last_received_at)),
                c.events.to_string(),
            ]
        })
        .collect();
    let body = format!(
        "<p class=\"hint\">Most recent first, among the newest {} stored events.</p>{}",
        timeline::RECENT_EVENTS_SCANNED,
        table(&["Conversation", "Number", "Last event", "Events"], &rows)
    );
    Ok(respond(
        StatusCode::OK,
        page("Conversations", Some(&csrf), &body),
    ))
}

/// One line of the timeline, with the time it is ordered by (Unix ms).
struct Line {
    at_ms: i64,
    cells: Vec<String>,
}

pub async fn show(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let csrf = signed_in(&state, &headers, false)?;
    let now_ms = state.api.clock.now_ms();
    let Some(view) = ConversationView::load(&state.api.reads, &id, now_ms).await? else {
        return Ok(respond(
            StatusCode::NOT_FOUND,
            page(
                "No such conversation",
                Some(&csrf),
                &format!(
                    "<p>No stored event or outbound message has conversation id {}.</p>",
                    escape(&id)
                ),
            ),
        ));
    };
    let body = format!(
        "{}{}",
        window_html(&view),
        table(
            &["Time", "From", "What", "Message", "Status", "Source"],
            &lines(&view)
                .into_iter()
                .map(|line| line.cells)
                .collect::<Vec<_>>()
        )
    );
    Ok(respond(
        StatusCode::OK,
        page(&format!("Conversation {id}"), Some(&csrf), &body),
    ))
}

fn window_html(view: &ConversationView) -> String {
    let (class, text) = match (view.open, view.window.closes_at_ms()) {
        (Some(true), Some(closes)) => (
            "open",
            format!(
                "Open until {}: free-form messages may be sent.",
                time(closes)
            ),
        ),
        (_, Some(closes)) => (
            "closed",
            format!(
                "Closed since {}: only approved templates may be sent until the customer writes again.",
                time(closes)
            ),
        ),
        _ => (
            "unknown",
            "Unknown: no message of the customer is stored.".to_owned(),
        ),
    };
    let last = view
        .window
        .last_inbound_ms
        .map(|at| format!(" The customer last wrote at {}.", time(at)))
        .unwrap_or_default();
    format!(
        "<p class=\"window {class}\"><b>24-hour window:</b> {}{}</p>",
        escape(&text),
        escape(&last)
    )
}

/// The view's events and our messages in the order they happened. A status event of one of our
/// messages is shown as that message's status rather than as a line of its own.
fn lines(view: &ConversationView) -> Vec<Line> {
    let ours: Vec<&str> = view
        .outbound
        .iter()
        .filter_map(|(row, _)| row.wamid.as_deref())
        .collect();
    let mut lines: Vec<Line> = view
        .events
        .iter()
        .filter(|e| !(is_status(e) && e.message_id.as_deref().is_some_and(|w| ours.contains(&w))))
        .map(event_line)
        .collect();
    lines.extend(
        view.outbound
            .iter()
            .map(|(row, status)| outbound_line(row, status)),
    );
    // Stable: events keep their stored order among equal times, and come before our messages.
    lines.sort_by_key(|line| line.at_ms);
    lines
}

fn is_status(event: &TimelineEvent) -> bool {
    matches!(
        event.event_type.as_str(),
        "whatsapp.message.sent"
            | "whatsapp.message.delivered"
            | "whatsapp.message.read"
            | "whatsapp.message.failed"
    )
}

fn event_line(event: &TimelineEvent) -> Line {
    // Its own time, but never after this server received it: a sender's clock ahead of ours
    // must not put a message after the reply it got (replies are timed by our clock).
    let at_ms = event
        .occurred_at
        .map_or(event.received_at, |s| s.saturating_mul(1000))
        .min(event.received_at);
    let from = match event.direction.as_deref() {
        Some("inbound") => "customer",
        Some("outbound") => "us",
        _ => "",
    };
    let status = if is_status(event) {
        event
            .event_type
            .strip_prefix("whatsapp.message.")
            .unwrap_or("")
    } else {
        ""
    };
    Line {
        at_ms,
        cells: vec![
            escape(&time(at_ms)),
            format!("<span class=\"from {from}\">{from}</span>"),
            escape(&event.event_type),
            format!(
                "<span class=\"message\">{}</span>",
                escape(event.text.as_deref().unwrap_or(""))
            ),
            status_html(status),
            format!("<a href=\"/admin/events/{0}\">event {0}</a>", event.id),
        ],
    }
}

fn outbound_line(row: &OutboundRow, status: &Option<String>) -> Line {
    let at_ms = row.sent_at.unwrap_or(row.created_at);
    // No status event yet: the ledger's state (`pending` until Kapso accepts it, then `sent`).
    let status = status.as_deref().unwrap_or(row.state.as_str());
    Line {
        at_ms,
        cells: vec![
            escape(&time(at_ms)),
            "<span class=\"from us\">us</span>".to_owned(),
            escape(&row.action),
            format!(
                "<span class=\"message\">{}</span>",
                escape(&outbound_text(&row.body))
            ),
            status_html(status),
            format!("job {}", row.job_id),
        ],
    }
}

fn status_html(status: &str) -> String {
    format!("<span class=\"status {0}\">{0}</span>", escape(status))
}

/// What one of our messages says: its text, a template's name, or its type.
fn outbound_text(body: &str) -> String {
    let Ok(body) = serde_json::from_str::<Value>(body) else {
        return String::new();
    };
    let at = |path: &[&str]| {
        path.iter()
            .try_fold(&body, |value, key| value.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    at(&["text", "body"])
        .or_else(|| at(&["template", "name"]).map(|name| format!("template {name}")))
        .or_else(|| at(&["interactive", "body", "text"]))
        .or_else(|| at(&["type"]))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Window;

    #[test]
    fn a_message_stamped_ahead_of_our_clock_still_comes_before_its_reply() {
        let received_at = 1_000_000;
        let inbound = TimelineEvent {
            id: 1,
            event_type: "whatsapp.message.received".into(),
            direction: Some("inbound".into()),
            message_id: Some("wamid.in".into()),
            message_type: Some("text".into()),
            // The sender's clock is 10 s ahead of ours.
            occurred_at: Some((received_at + 10_000) / 1000),
            received_at,
            text: Some("hello".into()),
            flags: None,
        };
        let read = TimelineEvent {
            id: 2,
            event_type: "whatsapp.message.read".into(),
            direction: Some("outbound".into()),
            message_id: Some("wamid.out".into()),
            occurred_at: Some((received_at + 12_000) / 1000),
            received_at: received_at + 3_000,
            text: None,
            ..inbound.clone()
        };
        let reply = OutboundRow {
            id: 1,
            job_id: 7,
            seq: 0,
            phone_number_id: "1".into(),
            action: "send".into(),
            state: "sent".into(),
            wamid: Some("wamid.out".into()),
            created_at: received_at + 500,
            sent_at: Some(received_at + 1_000),
            body: r#"{"type":"text","text":{"body":"hi there"}}"#.into(),
        };
        let view = ConversationView {
            events: vec![inbound, read],
            outbound: vec![(reply, Some("read".into()))],
            window: Window::default(),
            open: None,
        };
        let lines = lines(&view);
        assert_eq!(lines.len(), 2, "the read status is shown on the reply");
        assert!(lines[0].cells[3].contains("hello"));
        assert!(lines[1].cells[3].contains("hi there"));
        assert!(lines[1].cells[4].contains("read"));
    }

    #[test]
    fn our_message_is_described_by_its_text_or_template() {
        assert_eq!(
            outbound_text(r#"{"type":"text","text":{"body":"got <it>"}}"#),
            "got <it>"
        );
        assert_eq!(
            outbound_text(r#"{"type":"template","template":{"name":"follow_up"}}"#),
            "template follow_up"
        );
        assert_eq!(outbound_text(r#"{"type":"image"}"#), "image");
        assert_eq!(outbound_text("not json"), "");
    }
}
