//! switchboard: receives Kapso WhatsApp webhooks, verifies and stores them durably (deduplicated)
//! before acknowledging. See README.md for the pipeline and configuration.

pub mod admin;
pub mod admin_api;
pub mod app;
pub mod buffer;
pub mod catch_up;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod db;
pub mod demo;
pub mod dispatch;
pub mod event;
pub mod handlers;
pub mod http_server;
pub mod inbox;
pub mod ingest;
pub mod jobs;
pub mod kapso;
pub mod kapso_sim;
pub mod log_text;
pub mod metrics;
pub mod pacing;
pub mod retention;
pub mod router;
pub mod secret;
pub mod sync;
pub mod telemetry;
pub mod template;
pub mod window;
pub mod write_health;
pub mod write_priority;
pub mod write_queue;

pub use app::{run, App};
pub use config::Config;
