//! Kapso's message history: `GET /{phone_number_id}/messages` on the Meta proxy (operation
//! `listMessages` of Kapso's OpenAPI): filters `conversation_id`, `direction`, `status`,
//! `since`/`until` (ISO 8601), `limit` (at most 100), cursor paging with `after`/`before`, and
//! `fields=kapso(...)` naming Kapso's extensions explicitly ([`KAPSO_FIELDS`]): Kapso's docs and
//! SDK say a bare `kapso()` *omits* them, its OpenAPI says it includes them, so the explicit list
//! (what Kapso's own Chat SDK adapter sends) works under either reading. Each item is a message
//! in the webhook's `message` shape (`id` is the wamid), with `kapso.direction`,
//! `kapso.whatsapp_conversation_id`, `kapso.phone_number` and `kapso.contact_name`.

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::client::join;
use super::{KapsoClient, KapsoError};

/// Most messages Kapso returns per page.
pub const MAX_PAGE: u32 = 100;

/// The `fields` parameter sent with every history call: Kapso's extensions, named one by one.
pub const KAPSO_FIELDS: &str = "kapso(direction,status,phone_number,whatsapp_conversation_id,contact_name,content,has_media,media_data,media_url,message_type_data,flow_response,flow_token,flow_name,order_text)";

/// Which messages to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageQuery {
    pub conversation_id: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: Option<String>,
    /// `pending`, `sent`, `delivered`, `read` or `failed`.
    pub status: Option<String>,
    /// ISO 8601; messages created at or after.
    pub since: Option<String>,
    /// ISO 8601; messages created at or before.
    pub until: Option<String>,
    /// Page size, 1 to [`MAX_PAGE`].
    pub limit: u32,
    /// The cursor of the page to read (from the previous page's `next`).
    pub after: Option<String>,
    /// The cursor of the newer page to read (from a page's `paging.cursors.before`).
    pub before: Option<String>,
}

/// One page of messages, and the cursor of the next when there may be more.
#[derive(Debug, Clone, PartialEq)]
pub struct MessagePage {
    pub messages: Vec<Value>,
    pub next: Option<String>,
}

#[derive(Deserialize)]
struct RawPage {
    #[serde(default)]
    data: Vec<Value>,
    #[serde(default)]
    paging: Option<RawPaging>,
}

#[derive(Deserialize)]
struct RawPaging {
    #[serde(default)]
    cursors: Option<RawCursors>,
}

#[derive(Deserialize)]
struct RawCursors {
    after: Option<String>,
}

impl KapsoClient {
    /// One page of `phone_number_id`'s message history, with Kapso's fields.
    pub async fn list_messages(
        &self,
        phone_number_id: &str,
        query: &MessageQuery,
    ) -> Result<MessagePage, KapsoError> {
        let mut url = join(&self.inner.meta_base, &[phone_number_id, "messages"])?;
        {
            let mut pairs = url.query_pairs_mut();
            let limit = query.limit.clamp(1, MAX_PAGE);
            pairs.append_pair("limit", &limit.to_string());
            pairs.append_pair("fields", KAPSO_FIELDS);
            for (key, value) in [
                ("conversation_id", &query.conversation_id),
                ("direction", &query.direction),
                ("status", &query.status),
                ("since", &query.since),
                ("until", &query.until),
                ("after", &query.after),
                ("before", &query.before),
            ] {
                if let Some(value) = value {
                    pairs.append_pair(key, value);
                }
            }
        }
        let raw: RawPage = self
            .call_json("list_messages", Method::GET, url, None::<&()>)
            .await?;
        // The last page: a null or absent `after`, an empty page, or a short page (whatever
        // cursor comes with it).
        let full = raw.data.len() >= query.limit.clamp(1, MAX_PAGE) as usize;
        let next = raw
            .paging
            .and_then(|p| p.cursors)
            .and_then(|c| c.after)
            .filter(|cursor| full && !cursor.is_empty());
        Ok(MessagePage {
            messages: raw.data,
            next,
        })
    }
}
