//! switchboard: receives Kapso WhatsApp webhooks, verifies and stores them durably (deduplicated)
//! before acknowledging. See README.md for the pipeline and configuration.

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod event;
pub mod inbox;
pub mod ingest;
pub mod metrics;
pub mod secret;
pub mod telemetry;
pub mod template;

pub use app::{run, App};
pub use config::Config;
