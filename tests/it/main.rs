//! One integration-test binary: real server on an ephemeral loopback port, fresh SQLite file
//! per test, requests signed the way Kapso signs them.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod admin;
mod admin_api;
mod browser;
mod catch_up;
mod check;
mod cli;
mod cli_help;
mod cli_prune;
mod cli_simulate;
mod console;
mod demo;
mod docker;
mod faults;
mod ingest;
mod kapso;
mod meta_webhooks;
mod net_limits;
mod pacing;
mod payload_examples;
mod payloads;
mod pipeline;
mod readme;
mod resends;
mod retention;
mod routes;
mod server_process;
mod storage;
mod sync;
mod test_app;
mod user_service;
mod window;
