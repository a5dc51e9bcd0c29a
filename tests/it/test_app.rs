//! `TestApp::spawn()`: the real server on 127.0.0.1:0 with a fresh SQLite file.

use std::path::{Path, PathBuf};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::SqlitePool;
use switchboard::clock::Clock;
use switchboard::ingest::signature::sign;
use switchboard::{App, Config};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "whsec_test_switchboard";
pub const OLD_SECRET: &str = "whsec_previous_secret";

pub struct TestApp {
    pub base_url: String,
    /// The ops listener's URL, when started with [`TestApp::spawn_with_ops`].
    pub ops_url: Option<String>,
    pub client: reqwest::Client,
    pub db_path: PathBuf,
    config_text: String,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    dir: tempfile::TempDir,
    /// The pipeline's clock, kept across restarts.
    clock: Clock,
    /// The running server's webhook sync state.
    webhook_sync: Option<tokio::sync::watch::Receiver<switchboard::sync::SyncState>>,
}

/// The config every test app starts from; `extra` is appended (more tables, overrides).
pub fn config_text(db_path: &Path, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
body_limit_bytes = 4096

[storage]
url = "sqlite://{db}"

[[webhooks]]
name = "support"
secrets = ["{SECRET}", "{OLD_SECRET}"]

[[webhooks]]
name = "sales"
secrets = ["whsec_sales_only"]
{extra}
"#,
        db = db_path.display()
    )
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with("").await
    }

    pub async fn spawn_with(extra: &str) -> TestApp {
        TestApp::spawn_with_server("", extra).await
    }

    /// Like [`TestApp::spawn_with`], with the pipeline's time read from `clock` (a
    /// `Clock::Manual` lets the test move it by hand).
    pub async fn spawn_with_clock(extra: &str, clock: Clock) -> TestApp {
        TestApp::spawn_configured("", extra, clock, false).await
    }

    /// Like [`TestApp::spawn_with`], with more `[server]` keys (e.g. `public_url = "..."`).
    pub async fn spawn_with_server(server_keys: &str, extra: &str) -> TestApp {
        TestApp::spawn_configured(server_keys, extra, Clock::System, false).await
    }

    /// Like [`TestApp::spawn_with_server`], with the pipeline's (and the webhook sync's) time
    /// read from `clock`.
    pub async fn spawn_with_server_and_clock(
        server_keys: &str,
        extra: &str,
        clock: Clock,
    ) -> TestApp {
        TestApp::spawn_configured(server_keys, extra, clock, false).await
    }

    /// The background webhook sync's state (startup and periodic runs), to wait on.
    pub fn webhook_sync(&self) -> tokio::sync::watch::Receiver<switchboard::sync::SyncState> {
        self.webhook_sync.clone().expect("the server was started")
    }

    /// Like [`TestApp::spawn_with_server`], with `/metrics` and `/readyz` on a second
    /// listener at [`TestApp::ops_url`].
    pub async fn spawn_with_ops(server_keys: &str) -> TestApp {
        TestApp::spawn_configured(server_keys, "", Clock::System, true).await
    }

    async fn spawn_configured(server_keys: &str, extra: &str, clock: Clock, ops: bool) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("switchboard.db");
        let config_text = config_text(&db_path, extra).replacen(
            "[server]\n",
            &format!("[server]\n{server_keys}\n"),
            1,
        );
        let mut app = TestApp {
            base_url: String::new(),
            ops_url: ops.then(String::new),
            client: reqwest::Client::new(),
            db_path,
            config_text,
            shutdown: CancellationToken::new(),
            server: None,
            dir,
            clock,
            webhook_sync: None,
        };
        app.start().await;
        app
    }

    pub fn config_path(&self) -> PathBuf {
        let path = self.dir.path().join("switchboard.toml");
        std::fs::write(&path, &self.config_text).unwrap();
        path
    }

    async fn start(&mut self) {
        let config = Config::parse("test.toml", &self.config_text, |_| None).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.base_url = format!("http://{}", listener.local_addr().unwrap());
        let app = App::build_with_clock(config, self.clock.clone())
            .await
            .unwrap();
        self.webhook_sync = Some(app.webhook_sync());
        self.shutdown = CancellationToken::new();
        let ops = match self.ops_url {
            Some(_) => {
                let ops = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                self.ops_url = Some(format!("http://{}", ops.local_addr().unwrap()));
                Some(ops)
            }
            None => None,
        };
        self.server = Some(tokio::spawn(app.serve_with_ops(
            listener,
            ops,
            self.shutdown.clone(),
        )));
    }

    /// Graceful stop: waits until the server has finished and closed the database.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    /// Simulates a crash: the server and every background task are dropped mid-flight, with
    /// no graceful shutdown (running jobs keep their leases in the database).
    pub async fn kill(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Starts again on the same database file after [`TestApp::kill`].
    pub async fn start_again(&mut self) {
        self.start().await;
    }

    /// Stops and starts again on the same database file.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start().await;
    }

    pub async fn post(
        &self,
        path: &str,
        body: impl Into<Vec<u8>>,
        headers: HeaderMap,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base_url))
            .headers(headers)
            .header("content-type", "application/json")
            .body(body.into())
            .send()
            .await
            .unwrap()
    }

    /// Posts `body` to webhook `webhook` signed with `secret`, with Kapso's headers.
    pub async fn deliver_signed(
        &self,
        webhook: &str,
        secret: &str,
        event: &str,
        body: &[u8],
    ) -> reqwest::Response {
        let headers = kapso_headers(secret, event, body, None);
        self.post(&format!("/webhooks/{webhook}"), body.to_vec(), headers)
            .await
    }

    /// Posts a JSON event to the `support` webhook, correctly signed. Returns the status.
    pub async fn deliver(&self, event: &str, body: &Value) -> u16 {
        let bytes = serde_json::to_vec(body).unwrap();
        self.deliver_signed("support", SECRET, event, &bytes)
            .await
            .status()
            .as_u16()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .unwrap()
    }

    /// A separate connection to the same SQLite file, as an operator would open it.
    pub async fn db(&self) -> SqlitePool {
        let options = SqliteConnectOptions::new().filename(&self.db_path);
        SqlitePool::connect_with(options).await.unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        let pool = self.db().await;
        let n = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The headers Kapso sends with a single (non-batched) v2 delivery.
pub fn kapso_headers(
    secret: &str,
    event: &str,
    body: &[u8],
    idempotency_key: Option<&str>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).unwrap(),
        );
    };
    put("x-webhook-signature", &sign(secret.as_bytes(), body));
    put("x-webhook-event", event);
    put("x-webhook-payload-version", "v2");
    let key = idempotency_key.map_or_else(|| hex_sha256(body), str::to_owned);
    put("x-idempotency-key", &key);
    headers
}

fn hex_sha256(body: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(body))
}

/// The value of one sample in a Prometheus text exposition, e.g.
/// `metric(&text, "switchboard_deliveries_total", &["webhook=\"support\"", "result=\"stored\""])`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Serves `app` on `listener` until the returned guard is dropped (stand-ins for services on
/// the other side: Kapso's receiver, a gate in front of the simulator).
pub fn serve_until_dropped(
    listener: tokio::net::TcpListener,
    app: axum::Router,
) -> tokio_util::sync::DropGuard {
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .unwrap();
    });
    token.drop_guard()
}
