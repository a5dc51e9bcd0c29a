//! The simulated Kapso's memory: stored webhooks, recordings of requests, sends and
//! deliveries, the queue of scripted failures, a change signal for waiting without sleeps,
//! and the background deliveries it owns.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::deliver::DeliveryReport;
use super::{RecordedRequest, RecordedSend, ScriptedResponse, SimConfig, SimPhoneNumber};

/// A webhook as the sim stores it: the `WhatsappWebhook` JSON object, plus creation order.
#[derive(Debug, Clone)]
pub(crate) struct StoredWebhook {
    pub seq: u64,
    pub json: Map<String, Value>,
}

impl StoredWebhook {
    pub fn str(&self, key: &str) -> Option<&str> {
        self.json.get(key).and_then(Value::as_str)
    }
}

#[derive(Default)]
pub(crate) struct Records {
    pub webhooks: Vec<StoredWebhook>,
    pub requests: Vec<RecordedRequest>,
    pub sends: Vec<RecordedSend>,
    pub deliveries: Vec<DeliveryReport>,
    /// The message history (`GET /{phone_number_id}/messages`), in the order stored.
    pub history: Vec<super::history::HistoryEntry>,
    pub script: VecDeque<ScriptedResponse>,
    /// Numbers of the messages refused for going over `send_limit`, in order.
    pub throttled: Vec<String>,
    pub buckets: super::throughput::Buckets,
    /// Where Kapso reads the time: `SimConfig::clock`.
    pub clock: crate::clock::Clock,
    next_seq: u64,
    last_millis: i128,
}

impl Records {
    pub fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Keeps what a webhook event tells of a message in the history, as Kapso has it whether or
    /// not the delivery succeeds: a received message is added; a status event moves the
    /// outbound message it names to that status.
    pub fn keep(&mut self, event_type: &str, payload: &Value) {
        let now = self.now_ms();
        if let Some(entry) = super::history::inbound_entry(event_type, payload, now) {
            self.history.push(entry);
        } else {
            super::history::apply_status(&mut self.history, event_type, payload);
        }
    }

    /// Now in Unix ms, strictly increasing (shared with [`Records::now_iso`]).
    pub fn now_ms(&mut self) -> i128 {
        let now = i128::from(self.clock.now_ms());
        let millis = now.max(self.last_millis + 1);
        self.last_millis = millis;
        millis
    }

    /// Now as `2026-01-02T03:04:05.678Z`, strictly increasing so `updated_at` always moves.
    pub fn now_iso(&mut self) -> String {
        let now = i128::from(self.clock.now_ms());
        let millis = now.max(self.last_millis + 1);
        self.last_millis = millis;
        iso_millis(millis)
    }
}

pub(crate) fn iso_millis(millis: i128) -> String {
    let seconds = i64::try_from(millis.div_euclid(1000)).unwrap_or_default();
    let base = super::samples::iso_utc(seconds);
    format!(
        "{}.{:03}Z",
        base.trim_end_matches('Z'),
        millis.rem_euclid(1000)
    )
}

/// Parses the ISO-8601 forms Kapso uses (`Z` or `±HH:MM`, optional fraction) to Unix millis.
pub(crate) fn parse_iso_millis(text: &str) -> Option<i128> {
    let text = text.trim();
    let (date, rest) = text.split_once(['T', ' '])?;
    let mut ymd = date.splitn(3, '-').map(str::parse::<i32>);
    let (year, month, day) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let (clock, offset_minutes) = if let Some(clock) = rest.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (clock, offset) = rest.split_at(at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (h, m) = offset[1..].split_once(':').unwrap_or((&offset[1..], "0"));
        (
            clock,
            sign * (h.parse::<i32>().ok()? * 60 + m.parse::<i32>().ok()?),
        )
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut parts = hms.splitn(3, ':').map(str::parse::<u8>);
    let (h, mi, s) = (
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    );
    let millis: u16 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
    let time = time::Time::from_hms_milli(h, mi, s, millis).ok()?;
    let utc = time::PrimitiveDateTime::new(date, time).assume_utc();
    Some(utc.unix_timestamp_nanos() / 1_000_000 - i128::from(offset_minutes) * 60_000)
}

/// A random UUID v4 string.
pub(crate) fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A fresh wamid, shaped like Meta's (`wamid.` + base64-ish text).
pub(crate) fn new_wamid() -> String {
    let mut b = [0u8; 18];
    rand::thread_rng().fill_bytes(&mut b);
    format!("wamid.HBgL{}", hex::encode_upper(b))
}

pub(crate) struct SimState {
    pub config: SimConfig,
    pub base_url: String,
    /// `WhatsappPhoneNumber` objects, oldest first.
    pub phone_numbers: Vec<Value>,
    pub http: reqwest::Client,
    pub token: CancellationToken,
    records: Mutex<Records>,
    changed: watch::Sender<u64>,
    tasks: Mutex<JoinSet<()>>,
}

impl SimState {
    pub fn new(
        config: SimConfig,
        base_url: String,
        phone_numbers: Vec<Value>,
        token: CancellationToken,
    ) -> Self {
        let records = Records {
            clock: config.clock.clone(),
            ..Records::default()
        };
        SimState {
            config,
            base_url,
            phone_numbers,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            token,
            records: Mutex::new(records),
            changed: watch::channel(0).0,
            tasks: Mutex::new(JoinSet::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the records.
    pub fn read<T>(&self, f: impl FnOnce(&Records) -> T) -> T {
        f(&self.lock())
    }

    /// Changes the records and wakes every waiter.
    pub fn write<T>(&self, f: impl FnOnce(&mut Records) -> T) -> T {
        let out = f(&mut self.lock());
        self.changed.send_modify(|version| *version += 1);
        out
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// A stored webhook as the configured [`super::WebhookShape`] shows it.
    pub fn show_webhook(&self, stored: &Map<String, Value>) -> Value {
        self.config
            .webhook_shape
            .render(stored, &self.phone_numbers)
    }

    pub fn phone_number(&self, phone_number_id: &str) -> Option<&Value> {
        self.phone_numbers
            .iter()
            .find(|p| p.get("phone_number_id").and_then(Value::as_str) == Some(phone_number_id))
    }

    /// Runs `task` in the background; it is aborted at shutdown.
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    pub fn take_tasks(&self) -> JoinSet<()> {
        std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Records method, path, status, key header and JSON body of every request.
pub(crate) async fn record_requests(
    State(state): State<Arc<SimState>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let header = |name: &str| {
        let value = parts.headers.get(name)?;
        value.to_str().ok().map(str::to_owned)
    };
    let mut recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        status: 0,
        body: None,
        api_key: header("x-api-key"),
        content_type: header("content-type"),
    };
    let bytes = to_bytes(body, 4 * 1024 * 1024).await.unwrap_or_default();
    recorded.body = serde_json::from_slice(&bytes).ok();
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    recorded.status = response.status().as_u16();
    state.write(|r| r.requests.push(recorded));
    response
}

/// The `WhatsappPhoneNumber` objects the sim serves, oldest first.
pub(crate) fn phone_number_objects(numbers: &[SimPhoneNumber]) -> Vec<Value> {
    numbers
        .iter()
        .enumerate()
        .map(|(i, number)| {
            let created = iso_millis(1_736_866_800_000 + i as i128 * 60_000);
            let digits: String = number
                .display_phone_number
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            json!({
                "id": number.phone_number_id,
                "internal_id": uuid_v4(),
                "phone_number_id": number.phone_number_id,
                "name": number.name,
                "business_account_id": number.business_account_id,
                "is_coexistence": false,
                "inbound_processing_enabled": true,
                "calls_enabled": false,
                "webhook_verified_at": created,
                "created_at": created,
                "updated_at": created,
                "customer_id": null,
                "display_name": number.name,
                "display_phone_number": number.display_phone_number,
                "display_phone_number_normalized": digits,
                "verified_name": "Switchboard Demo",
                "quality_rating": "GREEN",
                "code_verification_status": "VERIFIED",
                "name_status": "APPROVED",
                "status": "CONNECTED",
                "throughput_tier": number.throughput_tier,
                "whatsapp_business_manager_messaging_limit": "10000",
                "is_official_business_account": false,
                "is_pin_enabled": true,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_timestamps_round_trip_and_accept_offsets() {
        let millis = 1_764_093_600_123;
        assert_eq!(iso_millis(millis), "2025-11-25T18:00:00.123Z");
        assert_eq!(parse_iso_millis("2025-11-25T18:00:00.123Z"), Some(millis));
        assert_eq!(parse_iso_millis("2025-11-25T18:00:00Z"), Some(millis - 123));
        assert_eq!(
            parse_iso_millis("2025-11-25T19:00:00+01:00"),
            Some(millis - 123)
        );
        assert_eq!(parse_iso_millis("yesterday"), None);
    }

    #[test]
    fn uuids_are_version_4() {
        let id = uuid_v4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }
}
