//! The Platform API half of [`KapsoClient`]: phone numbers and webhooks (CONTRACT §4), with
//! page-number paging followed to the end.

use bytes::Bytes;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use super::client::{encode_error, join, KapsoClient, MAX_PAGES};
use super::dto::{
    DataEnvelope, ListEnvelope, PhoneNumber, RemoteWebhook, UndecodableWebhook, WebhookFilter,
    WebhookKind, WebhookList, WebhookPatch, WebhookRequest,
};
use super::error::KapsoError;

impl KapsoClient {
    /// All phone numbers of the project (every page).
    pub async fn list_phone_numbers(&self) -> Result<Vec<PhoneNumber>, KapsoError> {
        self.list_all("list_phone_numbers", &["whatsapp", "phone_numbers"], &[])
            .await
    }

    /// All webhooks of the project, project- and number-scoped (every page). Fails if any
    /// element cannot be read; [`KapsoClient::read_project_webhooks`] keeps the others.
    pub async fn list_project_webhooks(&self) -> Result<Vec<RemoteWebhook>, KapsoError> {
        complete("list_project_webhooks", self.read_project_webhooks().await?)
    }

    /// All webhooks of the project (every page), with the elements that could not be decoded
    /// set apart instead of failing the whole list.
    pub async fn read_project_webhooks(&self) -> Result<WebhookList, KapsoError> {
        let elements = self
            .list_pages("list_project_webhooks", &["whatsapp", "webhooks"], &[])
            .await?;
        Ok(decode_webhooks(elements))
    }

    /// All webhooks of one phone number (every page), undecodable elements set apart.
    pub async fn read_number_webhooks(
        &self,
        phone_number_id: &str,
    ) -> Result<WebhookList, KapsoError> {
        let segments = ["whatsapp", "phone_numbers", phone_number_id, "webhooks"];
        let elements = self
            .list_pages("list_number_webhooks", &segments, &[])
            .await?;
        Ok(decode_webhooks(elements))
    }

    /// All webhooks of one phone number (every page).
    pub async fn list_number_webhooks(
        &self,
        phone_number_id: &str,
    ) -> Result<Vec<RemoteWebhook>, KapsoError> {
        self.list_number_webhooks_matching(phone_number_id, &WebhookFilter::default())
            .await
    }

    /// Webhooks of one phone number that match `filter` (Kapso filters server-side).
    pub async fn list_number_webhooks_matching(
        &self,
        phone_number_id: &str,
        filter: &WebhookFilter,
    ) -> Result<Vec<RemoteWebhook>, KapsoError> {
        let mut query = Vec::new();
        if let Some(url) = &filter.url_contains {
            query.push(("url_contains", url.clone()));
        }
        if let Some(kind) = filter.kind {
            let kind = match kind {
                WebhookKind::Kapso => "kapso",
                WebhookKind::Meta => "meta",
                WebhookKind::Unknown => "unknown",
            };
            query.push(("kind", kind.to_owned()));
        }
        if let Some(active) = filter.active {
            query.push(("active", active.to_string()));
        }
        let segments = ["whatsapp", "phone_numbers", phone_number_id, "webhooks"];
        let elements = self
            .list_pages("list_number_webhooks", &segments, &query)
            .await?;
        complete("list_number_webhooks", decode_webhooks(elements))
    }

    /// Creates a webhook: number-scoped route when `phone_number_id` is given (message and
    /// conversation events need that), project route otherwise. Not idempotent.
    pub async fn create_webhook(
        &self,
        phone_number_id: Option<&str>,
        request: &WebhookRequest,
    ) -> Result<RemoteWebhook, KapsoError> {
        let url = self.webhooks_url(phone_number_id, None)?;
        let body = json!({ "whatsapp_webhook": request });
        let data: DataEnvelope<RemoteWebhook> = self
            .call_json("create_webhook", Method::POST, url, Some(&body))
            .await?;
        Ok(data.data)
    }

    /// PATCHes the fields set in `patch`; Kapso leaves the others as they are.
    pub async fn update_webhook(
        &self,
        phone_number_id: Option<&str>,
        webhook_id: &str,
        patch: &WebhookPatch,
    ) -> Result<RemoteWebhook, KapsoError> {
        let fields = match serde_json::to_value(patch) {
            Ok(Value::Object(fields)) => fields,
            _ => Map::new(),
        };
        self.update_webhook_fields(phone_number_id, webhook_id, &fields)
            .await
    }

    /// PATCH with a raw field map (keys of `WhatsappWebhookUpdateRequest`).
    pub async fn update_webhook_fields(
        &self,
        phone_number_id: Option<&str>,
        webhook_id: &str,
        fields: &Map<String, Value>,
    ) -> Result<RemoteWebhook, KapsoError> {
        let url = self.webhooks_url(phone_number_id, Some(webhook_id))?;
        let body = json!({ "whatsapp_webhook": fields });
        let data: DataEnvelope<RemoteWebhook> = self
            .call_json("update_webhook", Method::PATCH, url, Some(&body))
            .await?;
        Ok(data.data)
    }

    /// Deletes a webhook (204).
    pub async fn delete_webhook(
        &self,
        phone_number_id: Option<&str>,
        webhook_id: &str,
    ) -> Result<(), KapsoError> {
        let url = self.webhooks_url(phone_number_id, Some(webhook_id))?;
        self.execute("delete_webhook", Method::DELETE, url, None)
            .await
            .map(drop)
    }

    /// Asks Kapso to send a signed sample event (queued; arrives asynchronously). The event type
    /// must be one the webhook subscribes to, otherwise Kapso answers 422.
    pub async fn test_webhook(
        &self,
        webhook_id: &str,
        event_type: Option<&str>,
    ) -> Result<(), KapsoError> {
        let url = join(
            &self.inner.platform_base,
            &["whatsapp", "webhooks", webhook_id, "test"],
        )?;
        let body = match event_type {
            Some(event_type) => json!({ "event_type": event_type }),
            None => json!({}),
        };
        let body = serde_json::to_vec(&body)
            .map(Bytes::from)
            .map_err(encode_error)?;
        self.execute("test_webhook", Method::POST, url, Some(body))
            .await
            .map(drop)
    }

    fn webhooks_url(
        &self,
        phone_number_id: Option<&str>,
        webhook_id: Option<&str>,
    ) -> Result<Url, KapsoError> {
        let mut segments = match phone_number_id {
            Some(id) => vec!["whatsapp", "phone_numbers", id, "webhooks"],
            None => vec!["whatsapp", "webhooks"],
        };
        segments.extend(webhook_id);
        join(&self.inner.platform_base, &segments)
    }

    async fn list_all<T: DeserializeOwned>(
        &self,
        op: &'static str,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Vec<T>, KapsoError> {
        let elements = self.list_pages(op, segments, query).await?;
        elements
            .into_iter()
            .map(|element| {
                serde_json::from_value(element).map_err(|e| KapsoError::Decode {
                    message: format!("{op}: unexpected list element: {e}"),
                })
            })
            .collect()
    }

    /// The raw `data` elements of every page of a page-number list.
    async fn list_pages(
        &self,
        op: &'static str,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Vec<Value>, KapsoError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut url = join(&self.inner.platform_base, segments)?;
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())))
                .append_pair("page", &page.to_string())
                .append_pair("per_page", &self.inner.page_size.to_string());
            let list: ListEnvelope<Value> =
                self.call_json(op, Method::GET, url, None::<&Value>).await?;
            let received = list.data.len();
            all.extend(list.data);
            let last_page = match list.meta {
                Some(meta) => page >= meta.total_pages,
                None => true,
            };
            if received == 0 || last_page {
                return Ok(all);
            }
        }
        Err(KapsoError::Decode {
            message: format!("{op}: the list did not end after {MAX_PAGES} pages"),
        })
    }
}

/// Decodes each element on its own, so one odd element does not hide the others.
fn decode_webhooks(elements: Vec<Value>) -> WebhookList {
    let mut list = WebhookList::default();
    for element in elements {
        match serde_json::from_value::<RemoteWebhook>(element.clone()) {
            Ok(hook) => list.webhooks.push(hook),
            Err(error) => list
                .undecodable
                .push(UndecodableWebhook::of(&element, &error)),
        }
    }
    list
}

/// The webhooks of `list`, or a decode error naming the elements that could not be read.
fn complete(op: &str, list: WebhookList) -> Result<Vec<RemoteWebhook>, KapsoError> {
    if list.undecodable.is_empty() {
        return Ok(list.webhooks);
    }
    let which: Vec<String> = list
        .undecodable
        .iter()
        .map(|u| {
            format!(
                "webhook {}: {}",
                u.id.as_deref().unwrap_or("(no id)"),
                u.error
            )
        })
        .collect();
    Err(KapsoError::Decode {
        message: format!("{op}: unexpected list element ({})", which.join("; ")),
    })
}
