//! A small WebDriver client (the W3C protocol, JSON over HTTP) for the browser tests: starts
//! `chromedriver` on a free loopback port, opens one headless Chromium session with a fresh
//! profile, and offers what the tests use (navigate, find by CSS, type, click, text, run a
//! script). Dropping the [`Browser`] shuts chromedriver down, which closes Chromium.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// How the W3C protocol names an element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long chromedriver may take to answer `/status` after it starts.
const DRIVER_START: Duration = Duration::from_secs(20);

const INSTALL_HINT: &str = "the browser tests need Chromium and its WebDriver: \
     install them with `apt-get install chromium chromium-driver` (Debian; `.ci/run` does this \
     when `chromedriver` is missing), or put `chromedriver` and `chromium` on PATH";

/// One element of the page, as WebDriver names it.
#[derive(Debug, Clone)]
pub struct Element(String);

/// A headless Chromium driven through its own chromedriver process.
pub struct Browser {
    driver: Child,
    driver_addr: SocketAddr,
    session_url: String,
    http: reqwest::Client,
    /// Chromium's profile, deleted with the browser.
    _profile: tempfile::TempDir,
}

/// The first of `names` found as an executable file on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

fn free_loopback_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("a bound address").port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `width` x `height` CSS
    /// pixels. Panics (failing the test, never skipping it) when either is not installed.
    pub async fn start(width: u32, height: u32) -> Browser {
        let driver_path = on_path(&["chromedriver"])
            .unwrap_or_else(|| panic!("`chromedriver` is not on PATH: {INSTALL_HINT}"));
        let chromium = on_path(&["chromium", "chromium-browser"])
            .unwrap_or_else(|| panic!("`chromium` is not on PATH: {INSTALL_HINT}"));
        let port = free_loopback_port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}; {INSTALL_HINT}", driver_path.display()));
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            driver_addr: SocketAddr::from(([127, 0, 0, 1], port)),
            session_url: String::new(),
            http: reqwest::Client::new(),
            _profile: profile,
        };
        browser.wait_for_driver().await;
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless=new",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--hide-scrollbars",
                        format!("--user-data-dir={}", browser._profile.path().display()),
                        format!("--window-size={width},{height}"),
                    ],
                },
            }}
        });
        let base = format!("http://{}", browser.driver_addr);
        let answer = browser
            .call(
                reqwest::Method::POST,
                &format!("{base}/session"),
                capabilities,
            )
            .await;
        let session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver started no session: {answer}"));
        browser.session_url = format!("{base}/session/{session}");
        browser
    }

    /// Polls chromedriver's `/status` until it is ready, failing after [`DRIVER_START`].
    async fn wait_for_driver(&mut self) {
        let deadline = tokio::time::Instant::now() + DRIVER_START;
        let url = format!("http://{}/status", self.driver_addr);
        loop {
            if let Ok(response) = self.http.get(&url).send().await {
                if let Ok(status) = response.json::<Value>().await {
                    if status["value"]["ready"] == true {
                        return;
                    }
                }
            }
            if let Ok(Some(exit)) = self.driver.try_wait() {
                panic!("chromedriver exited at start ({exit}); {INSTALL_HINT}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not answer on {url} within {DRIVER_START:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One WebDriver command; returns its `value`, or WebDriver's error (e.g. a stale element
    /// while a page is replaced). Fails the test when chromedriver cannot be reached.
    async fn try_call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Value,
    ) -> Result<Value, String> {
        let mut request = self.http.request(method.clone(), url);
        if method != reqwest::Method::GET && method != reqwest::Method::DELETE {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {url}: {e}"));
        let status = response.status();
        let answer: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {url}: unreadable answer: {e}"));
        if status.is_success() {
            Ok(answer["value"].clone())
        } else {
            Err(format!(
                "WebDriver {method} {url} failed ({status}): {}",
                answer["value"]
            ))
        }
    }

    /// One WebDriver command; returns its `value`, panicking with WebDriver's error.
    async fn call(&self, method: reqwest::Method, url: &str, body: Value) -> Value {
        self.try_call(method, url, body)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    async fn try_session(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.session_url);
        self.try_call(method, &url, body).await
    }

    async fn session(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.try_session(method, path, body)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Opens `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) {
        self.session(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    pub async fn current_url(&self) -> String {
        let url = self
            .session(reqwest::Method::GET, "/url", Value::Null)
            .await;
        url.as_str().unwrap_or_default().to_owned()
    }

    /// Every element matching the CSS `selector`, in document order.
    pub async fn find_all(&self, selector: &str) -> Vec<Element> {
        let found = self
            .session(
                reqwest::Method::POST,
                "/elements",
                json!({ "using": "css selector", "value": selector }),
            )
            .await;
        found
            .as_array()
            .map(|all| all.iter().filter_map(element_of).collect())
            .unwrap_or_default()
    }

    /// The one element the page must have for `selector` (the first, if several).
    pub async fn find(&self, selector: &str) -> Element {
        match self.find_all(selector).await.into_iter().next() {
            Some(element) => element,
            None => panic!(
                "no element matches `{selector}` on {}; the page:\n{}",
                self.current_url().await,
                self.source().await
            ),
        }
    }

    /// The page's current DOM as HTML (for failure messages).
    pub async fn source(&self) -> String {
        let html = self
            .session(reqwest::Method::GET, "/source", Value::Null)
            .await;
        html.as_str().unwrap_or_default().to_owned()
    }

    /// The rendered text of `element` (what a reader sees).
    pub async fn text(&self, element: &Element) -> String {
        let path = format!("/element/{}/text", element.0);
        let text = self.session(reqwest::Method::GET, &path, Value::Null).await;
        text.as_str().unwrap_or_default().to_owned()
    }

    /// The text of the first element matching `selector`.
    pub async fn text_of(&self, selector: &str) -> String {
        let element = self.find(selector).await;
        self.text(&element).await
    }

    /// Polls the text of the first element matching `selector` until `wanted` accepts it (the
    /// page may still be loading after a click, or change when reloaded by `refresh`); returns
    /// that text, or fails after `within`.
    pub async fn wait_for_text<F, R, Fut>(
        &self,
        selector: &str,
        within: Duration,
        mut refresh: R,
        wanted: F,
    ) -> String
    where
        F: Fn(&str) -> bool,
        R: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let deadline = tokio::time::Instant::now() + within;
        let mut last = None;
        loop {
            if let Some(text) = self.try_text_of(selector).await {
                if wanted(&text) {
                    return text;
                }
                last = Some(text);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{selector}` did not show what was expected within {within:?}; last seen: {last:?} at {}",
                self.current_url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            refresh().await;
        }
    }

    /// The text of the first element matching `selector`, or `None` while there is none (or
    /// the page it was found on is being replaced).
    async fn try_text_of(&self, selector: &str) -> Option<String> {
        let query = json!({ "using": "css selector", "value": selector });
        let found = self
            .try_session(reqwest::Method::POST, "/elements", query)
            .await
            .ok()?;
        let element = found.as_array()?.iter().find_map(element_of)?;
        let path = format!("/element/{}/text", element.0);
        let text = self
            .try_session(reqwest::Method::GET, &path, Value::Null)
            .await
            .ok()?;
        text.as_str().map(str::to_owned)
    }

    /// Polls until the page's URL satisfies `wanted` and the page has loaded; fails after
    /// `within`.
    pub async fn wait_for_url(&self, within: Duration, wanted: impl Fn(&str) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        let script = json!({ "script": "return [location.href, document.readyState]", "args": [] });
        let mut last = Value::Null;
        loop {
            if let Ok(state) = self
                .try_session(reqwest::Method::POST, "/execute/sync", script.clone())
                .await
            {
                if state[0].as_str().is_some_and(&wanted) && state[1] == "complete" {
                    return;
                }
                last = state;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page did not reach the expected URL within {within:?}; last seen: {last}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types `text` into `element`, as a user would.
    pub async fn type_into(&self, element: &Element, text: &str) {
        let path = format!("/element/{}/value", element.0);
        self.session(reqwest::Method::POST, &path, json!({ "text": text }))
            .await;
    }

    /// Clicks `element`. A click that opens a page may return before that page has loaded:
    /// wait for what it shows ([`Browser::wait_for_text`], [`Browser::wait_for_url`]).
    pub async fn click(&self, element: &Element) {
        let path = format!("/element/{}/click", element.0);
        self.session(reqwest::Method::POST, &path, json!({})).await;
    }

    /// Runs `script` (a function body; `return` gives the result) in the page.
    pub async fn execute(&self, script: &str) -> Value {
        self.session(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// Ends the session (closing Chromium) and stops chromedriver.
    pub async fn quit(mut self) {
        self.session(reqwest::Method::DELETE, "", Value::Null).await;
        self.stop_driver();
    }

    /// Asks chromedriver to shut down (it closes every browser it started), then makes sure
    /// the process is gone.
    fn stop_driver(&mut self) {
        if let Ok(None) = self.driver.try_wait() {
            if let Ok(mut stream) =
                TcpStream::connect_timeout(&self.driver_addr, Duration::from_secs(2))
            {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let request = format!(
                    "GET /shutdown HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.driver_addr
                );
                if stream.write_all(request.as_bytes()).is_ok() {
                    let mut answer = Vec::new();
                    let _ = stream.read_to_end(&mut answer);
                }
            }
            let _ = self.driver.kill();
        }
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop_driver();
    }
}

fn element_of(value: &Value) -> Option<Element> {
    value[ELEMENT_KEY].as_str().map(|id| Element(id.to_owned()))
}
