//! Everything switchboard says to Kapso: the [`KapsoClient`] (Platform API and Meta proxy),
//! its [`KapsoError`] with CONTRACT §6 retry hints, and the request/response DTOs.
//! The simulated Kapso that tests and `demo` talk to lives in `crate::kapso_sim`.

pub mod client;
pub mod dto;
pub mod error;
pub mod history;
pub mod limiter;
mod platform;
pub mod retry;

pub use client::KapsoClient;
pub use dto::{
    MessagingLimit, PageMeta, PhoneNumber, RemoteScope, RemoteWebhook, SendResponse,
    UndecodableWebhook, WebhookFilter, WebhookKind, WebhookList, WebhookPatch, WebhookRequest,
};
pub use error::{GraphError, KapsoError};
pub use history::{MessagePage, MessageQuery};
pub use limiter::ApiLimiter;
pub use retry::{ErrorCategory, RetryHint, RetryPolicy};
