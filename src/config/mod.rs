//! Typed TOML configuration: `${VAR}` expansion from the environment, unknown keys rejected,
//! and [`Config::validate`] cross-checks, so a mistake fails at startup naming the file and key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::secret::Secret;
use expand::{expand_env, line_hint};

pub mod admin;
pub mod catch_up;
mod expand;
pub mod pipeline;
pub mod retention;
#[cfg(test)]
mod secret_errors;
mod server_limits;
mod storage_limits;
mod storage_only;
pub mod sync;
pub mod template_message;
pub mod webhooks;

pub use catch_up::CatchUpConfig;
pub use pipeline::{BufferConfig, HandlerConfig, JobsConfig, RouteConfig};
pub use retention::RetentionConfig;
pub use sync::SyncConfig;
pub use webhooks::{KapsoBufferConfig, PayloadVersion, WebhookConfig, WebhookKindConfig};

/// The configuration `serve` uses when no `--config` is given: a local development setup.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.toml");
pub const EMBEDDED_DEFAULT_NAME: &str = "<embedded config/default.toml>";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read the file: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not valid TOML: {message}")]
    Syntax { file: String, message: String },
    #[error(
        "{file}: key `{key}`: environment variable `{var}` is not set; export it, or write `${{{var}:-default}}` to give a default"
    )]
    MissingEnv {
        file: String,
        key: String,
        var: String,
    },
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub kapso: KapsoConfig,
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    #[serde(default)]
    pub buffer: BufferConfig,
    #[serde(default)]
    pub jobs: JobsConfig,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub sync: SyncConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub admin: admin::AdminConfig,
    #[serde(default)]
    pub catch_up: CatchUpConfig,
}

/// Where and how switchboard calls Kapso (Platform API and Meta proxy).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KapsoConfig {
    /// Host only: `/platform/v1` and `/meta/whatsapp/{graph_version}` are appended.
    pub base_url: String,
    /// Project API key, sent as `X-API-Key`. Needed to send messages and sync webhooks.
    pub api_key: Option<Secret>,
    /// Graph API version of the Meta proxy path.
    pub graph_version: String,
    /// Timeout of one HTTP call to Kapso.
    pub timeout_ms: u64,
    /// Extra attempts of one call on 429, 5xx, 409 or a transport error (honouring Retry-After).
    pub max_retries: u32,
    /// Messages per second each business number sends at when neither `send_rates` nor its
    /// Kapso phone-number object says otherwise (Meta's default throughput is 80).
    pub default_send_rate: f64,
    /// Per-number rate overrides: `phone_number_id` → messages per second.
    pub send_rates: std::collections::HashMap<String, f64>,
    /// Kapso's request limit per API key and minute (by plan: 100, 500 or 1000), kept for
    /// every call but sends and mark-as-read; see [`crate::kapso::limiter`].
    pub api_requests_per_minute: u32,
}

impl Default for KapsoConfig {
    fn default() -> Self {
        KapsoConfig {
            base_url: "https://api.kapso.ai".to_owned(),
            api_key: None,
            graph_version: "v24.0".to_owned(),
            timeout_ms: 10_000,
            max_retries: 2,
            default_send_rate: crate::pacing::tier::STANDARD_RATE,
            send_rates: std::collections::HashMap::new(),
            api_requests_per_minute: crate::kapso::limiter::DEFAULT_REQUESTS_PER_MINUTE,
        }
    }
}

/// Highest send rate accepted, messages per second (Meta's highest throughput is 1,000).
pub const MAX_SEND_RATE: f64 = 10_000.0;

impl KapsoConfig {
    fn validate_rates(&self, file: &str) -> Result<(), ConfigError> {
        let check = |key: String, rate: f64| {
            if rate.is_finite() && rate > 0.0 && rate <= MAX_SEND_RATE {
                return Ok(());
            }
            Err(ConfigError::Invalid {
                file: file.to_owned(),
                key,
                message: format!(
                    "{rate} is out of range: use messages per second above 0 and at most 10000 (default 80)"
                ),
            })
        };
        check("kapso.default_send_rate".to_owned(), self.default_send_rate)?;
        for (number, rate) in &self.send_rates {
            check(format!("kapso.send_rates.{number}"), *rate)?;
        }
        if !(1..=100_000).contains(&self.api_requests_per_minute) {
            return Err(ConfigError::Invalid {
                file: file.to_owned(),
                key: "kapso.api_requests_per_minute".to_owned(),
                message: format!(
                    "{} is out of range: use 1 to 100000, your Kapso plan's limit (100 free, 500 pro, 1000 enterprise; default 100)",
                    self.api_requests_per_minute
                ),
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Largest delivery body accepted; larger ones get 413.
    pub body_limit_bytes: usize,
    /// Most bytes all request bodies being read or handled may hold together; a request that
    /// would go past it gets 503 at once (slow or abandoned bodies cannot pin more memory).
    pub body_memory_bytes: usize,
    /// How long shutdown waits for in-flight requests before giving up.
    pub shutdown_grace_ms: u64,
    /// A delivery not committed within this many ms of its arrival gets 503 (Kapso gives up
    /// on a delivery after 10 s and retries it later).
    pub request_deadline_ms: u64,
    /// Where Kapso reaches this server (no trailing `/`); webhook sync registers
    /// `{public_url}/webhooks/{name}`. Unset (or empty): no sync.
    pub public_url: Option<String>,
    /// Time from a connection opening (or its previous response) until the request's headers
    /// are complete; a slower client is disconnected.
    pub header_timeout_ms: u64,
    /// Time from a request's headers until its body is complete; a slower body is dropped.
    pub body_timeout_ms: u64,
    /// How long a keep-alive connection may wait without a request before it is closed.
    pub idle_timeout_ms: u64,
    /// Most connections open at once on the public listener (the ops listener has as many
    /// again); more wait in the kernel's backlog until a slot frees.
    pub max_connections: usize,
    /// A second (private) address for `/metrics` and `/readyz`; when set, those two are
    /// served only there. `/healthz` is on both.
    pub ops_listen: Option<SocketAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 1024 * 1024,
            body_memory_bytes: 32 * 1024 * 1024,
            shutdown_grace_ms: 10_000,
            request_deadline_ms: 8_000,
            public_url: None,
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            idle_timeout_ms: 5_000,
            max_connections: 4096,
            ops_listen: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Off,
    Normal,
    Full,
    Extra,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://PATH` (relative paths are relative to the working directory).
    pub url: String,
    /// SQLite `synchronous` of inbox commits: `full` (default) makes every delivery durable
    /// before the 200.
    pub synchronous: Synchronous,
    /// SQLite `synchronous` of everything after the inbox (routing, buffers, job state, sent
    /// marks). `normal` (default) skips the fsync: a process crash loses nothing, a power loss
    /// may lose the last job-state changes (the job runs again; a send confirmed in the last
    /// moment may be repeated). The next inbox commit makes them durable too.
    pub pipeline_synchronous: Synchronous,
    /// How long a writer waits for a lock before failing.
    pub busy_timeout_ms: u64,
    /// Most deliveries committed together in one transaction.
    pub group_commit_max: usize,
    /// A cap on the database file, in MiB, applied as SQLite's `max_page_count` on every
    /// connection (the WAL file is not counted). Absent: no cap.
    pub max_size_mb: Option<u64>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: "sqlite://data/switchboard.db".to_owned(),
            synchronous: Synchronous::Full,
            pipeline_synchronous: Synchronous::Normal,
            busy_timeout_ms: 5_000,
            group_commit_max: 512,
            max_size_mb: None,
        }
    }
}

/// A config file's name (for errors) and text.
fn read_file(path: &Path) -> Result<(String, String), ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    Ok((file, text))
}

/// Parses TOML `text`; a syntax error names `file` and the line.
fn parse_toml<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Syntax {
        file: file.to_owned(),
        message: e.message().to_owned() + &line_hint(text, e.span()),
    })
}

impl Config {
    /// Reads, expands and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let (file, text) = read_file(path)?;
        Config::parse(&file, &text, |var| std::env::var(var).ok())
    }

    /// The built-in development configuration.
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::parse(EMBEDDED_DEFAULT_NAME, EMBEDDED_DEFAULT, |var| {
            std::env::var(var).ok()
        })
    }

    /// Parses `text` (named `file` in errors), reading `${VAR}` through `env`.
    pub fn parse(
        file: &str,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut value: toml::Value = parse_toml(file, text)?;
        let unexpanded_names = EntryNames::of(&value);
        expand_env(&mut value, &mut String::new(), &env).map_err(|(key, var)| {
            ConfigError::MissingEnv {
                file: file.to_owned(),
                key: unexpanded_names.name_key(&key),
                var,
            }
        })?;
        let names = EntryNames::of(&value);
        Config::from_tree(file, value).map_err(|e| e.with_entry_names(&names))
    }

    /// Deserialises and checks an expanded tree.
    fn from_tree(file: &str, value: toml::Value) -> Result<Config, ConfigError> {
        let mut config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Invalid {
                file: file.to_owned(),
                key: if key == "." {
                    "(top level)".to_owned()
                } else {
                    key
                },
                message: e.into_inner().to_string(),
            }
        })?;
        // An optional secret left empty (`${OLD_SECRET:-}`) is not a secret: drop it.
        for webhook in &mut config.webhooks {
            webhook.secrets.retain(|s| !s.expose().trim().is_empty());
        }
        for route in &mut config.routes {
            if let HandlerConfig::Http { secret, .. } = &mut route.handler {
                if secret
                    .as_ref()
                    .is_some_and(|s| s.expose().trim().is_empty())
                {
                    *secret = None;
                }
            }
        }
        if config
            .kapso
            .api_key
            .as_ref()
            .is_some_and(|k| k.expose().trim().is_empty())
        {
            config.kapso.api_key = None;
        }
        config.admin.normalise();
        sync::normalise(&mut config);
        pipeline::load_message_files(&mut config, file)?;
        config.validate(file)?;
        Ok(config)
    }

    /// Cross-field checks that serde cannot express.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            key,
            message,
        };
        webhooks::validate_webhooks(self, file)?;
        if self.storage.sqlite_path().is_none() {
            return Err(invalid(
                "storage.url".to_owned(),
                format!(
                    "`{}` is not supported: use `sqlite://PATH`, for example `sqlite://data/switchboard.db`",
                    self.storage.url
                ),
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.server.body_limit_bytes) {
            return Err(invalid(
                "server.body_limit_bytes".to_owned(),
                format!(
                    "{} is out of range: use 1024 to 67108864 (default 1048576)",
                    self.server.body_limit_bytes
                ),
            ));
        }
        if !(self.server.body_limit_bytes..=u32::MAX as usize)
            .contains(&self.server.body_memory_bytes)
        {
            return Err(invalid(
                "server.body_memory_bytes".to_owned(),
                format!(
                    "{} is out of range: use server.body_limit_bytes ({}) to 4294967295 (default 33554432): the budget must hold at least one body of the largest accepted size",
                    self.server.body_memory_bytes, self.server.body_limit_bytes
                ),
            ));
        }
        if !(100..=9_500).contains(&self.server.request_deadline_ms) {
            return Err(invalid(
                "server.request_deadline_ms".to_owned(),
                format!(
                    "{} is out of range: use 100 to 9500 (default 8000), below the 10 s after which Kapso gives up on a delivery",
                    self.server.request_deadline_ms
                ),
            ));
        }
        self.server.validate_limits(file)?;
        if !(self.kapso.base_url.starts_with("http://")
            || self.kapso.base_url.starts_with("https://"))
        {
            return Err(invalid(
                "kapso.base_url".to_owned(),
                format!(
                    "`{}` is not an http(s) URL; use the host only, e.g. https://api.kapso.ai",
                    self.kapso.base_url
                ),
            ));
        }
        self.kapso.validate_rates(file)?;
        pipeline::validate_pipeline(self, file)?;
        if !(1..=100_000).contains(&self.storage.group_commit_max) {
            return Err(invalid(
                "storage.group_commit_max".to_owned(),
                "use 1 to 100000 (default 512)".to_owned(),
            ));
        }
        self.storage.validate_size_cap(file)?;
        self.retention.validate(file)?;
        self.admin.validate(file)?;
        self.catch_up.validate(file)?;
        Ok(())
    }
}

/// The `name` of each `[[routes]]` and `[[webhooks]]` entry, by index, so that an error about
/// `routes[2].handler.text` can say which route that is: `routes[2] (name = "greet").handler.text`.
/// Read from the TOML tree, so it works for errors found while deserialising too.
#[derive(Debug, Default)]
struct EntryNames {
    routes: Vec<Option<String>>,
    webhooks: Vec<Option<String>>,
}

impl EntryNames {
    fn of(tree: &toml::Value) -> EntryNames {
        let names = |table: &str| -> Vec<Option<String>> {
            tree.get(table)
                .and_then(toml::Value::as_array)
                .map(|entries| {
                    entries
                        .iter()
                        .map(|e| {
                            e.get("name")
                                .and_then(toml::Value::as_str)
                                .map(str::to_owned)
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        EntryNames {
            routes: names("routes"),
            webhooks: names("webhooks"),
        }
    }

    /// `routes[2].handler.text` → `routes[2] (name = "greet").handler.text`; other keys, and
    /// entries without a name, unchanged.
    fn name_key(&self, key: &str) -> String {
        for (table, names) in [("routes", &self.routes), ("webhooks", &self.webhooks)] {
            let Some(rest) = key
                .strip_prefix(table)
                .and_then(|rest| rest.strip_prefix('['))
            else {
                continue;
            };
            let Some((index, after)) = rest.split_once(']') else {
                continue;
            };
            let name = index
                .parse::<usize>()
                .ok()
                .and_then(|i| names.get(i))
                .and_then(Option::as_deref);
            if let Some(name) = name {
                return format!("{table}[{index}] (name = {name:?}){after}");
            }
        }
        key.to_owned()
    }
}

impl ConfigError {
    /// Names the `[[routes]]` or `[[webhooks]]` entry the key is in (see [`EntryNames`]).
    fn with_entry_names(self, names: &EntryNames) -> ConfigError {
        match self {
            ConfigError::Invalid { file, key, message } => ConfigError::Invalid {
                file,
                key: names.name_key(&key),
                message,
            },
            ConfigError::MissingEnv { file, key, var } => ConfigError::MissingEnv {
                file,
                key: names.name_key(&key),
                var,
            },
            other => other,
        }
    }
}

impl StorageConfig {
    /// The database file named by `url`, if it is a SQLite URL.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self.url.strip_prefix("sqlite:")?;
        let path = rest.strip_prefix("//").unwrap_or(rest);
        let path = path.split('?').next().unwrap_or(path);
        (!path.is_empty()).then(|| PathBuf::from(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse("test.toml", text, |var| match var {
            "SECRET" => Some("s3cret".to_owned()),
            _ => None,
        })
    }

    const MINIMAL: &str = "[[webhooks]]\nname = \"support\"\nsecrets = [\"${SECRET}\"]\n";

    #[test]
    fn minimal_config_gets_defaults_and_expands_env() {
        let config = parse(MINIMAL).expect("valid");
        assert_eq!(config.webhooks[0].secrets[0].expose(), "s3cret");
        assert_eq!(config.server.body_limit_bytes, 1024 * 1024);
        assert_eq!(config.storage.synchronous, Synchronous::Full);
        assert_eq!(
            config.storage.sqlite_path(),
            Some(PathBuf::from("data/switchboard.db"))
        );
    }

    #[test]
    fn missing_env_var_names_file_key_and_variable() {
        let err = parse("[[webhooks]]\nname = \"a\"\nsecrets = [\"${NOPE}\"]\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("test.toml"), "{text}");
        assert!(
            text.contains("webhooks[0] (name = \"a\").secrets[0]"),
            "{text}"
        );
        assert!(text.contains("NOPE"), "{text}");
    }

    #[test]
    fn default_and_escape_forms_expand() {
        let env = |_: &str| None;
        assert_eq!(
            expand::expand_string("${X:-fallback}", &env).as_deref(),
            Ok("fallback")
        );
        assert_eq!(
            expand::expand_string("a$${X}b", &env).as_deref(),
            Ok("a${X}b")
        );
        assert_eq!(
            expand::expand_string("cost $5", &env).as_deref(),
            Ok("cost $5")
        );
    }

    #[test]
    fn unknown_key_is_rejected_with_its_path() {
        let err = parse(&format!(
            "{MINIMAL}[server]\nlisten = \"127.0.0.1:1\"\nport = 3\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("server"), "{err}");
        assert!(err.contains("unknown field `port`"), "{err}");
    }

    #[test]
    fn bad_enum_value_names_the_key_and_choices() {
        let err = parse(&format!("{MINIMAL}[storage]\nsynchronous = \"fast\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage.synchronous"), "{err}");
        assert!(err.contains("`full`"), "{err}");
    }

    #[test]
    fn duplicate_webhook_names_are_rejected() {
        let err = parse(&format!("{MINIMAL}{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("webhooks[1] (name = \"support\").name"),
            "{err}"
        );
    }

    #[test]
    fn empty_optional_secrets_are_dropped_but_one_is_required() {
        let config = parse("[[webhooks]]\nname = \"a\"\nsecrets = [\"${SECRET}\", \"${OLD:-}\"]\n")
            .expect("valid");
        assert_eq!(config.webhooks[0].secrets.len(), 1);
        let err = parse("[[webhooks]]\nname = \"a\"\nsecrets = [\"${OLD:-}\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("webhooks[0] (name = \"a\").secrets"), "{err}");
    }

    #[test]
    fn no_webhooks_is_an_error() {
        let err = parse("").unwrap_err().to_string();
        assert!(err.contains("[[webhooks]]"), "{err}");
    }

    #[test]
    fn syntax_error_names_the_line() {
        let err = parse("[server\n").unwrap_err().to_string();
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn non_sqlite_storage_is_rejected() {
        let err = parse(&format!("{MINIMAL}[storage]\nurl = \"postgres://x\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage.url"), "{err}");
    }

    const ROUTED: &str =
        "[kapso]\napi_key = \"k\"\n[[webhooks]]\nname = \"support\"\nsecrets = [\"s\"]\n";

    #[test]
    fn routes_parse_with_single_or_list_values() {
        let config = parse(&format!(
            "{ROUTED}[[routes]]\nname = \"greet\"\non = \"whatsapp.message.received\"\nwhen = {{ text = \"(?i)^hi\", webhook = \"support\" }}\nhandler = {{ kind = \"reply\", text = \"Hi {{{{contact.name}}}}\" }}\n"
        ))
        .expect("valid");
        assert_eq!(config.routes[0].on, ["whatsapp.message.received"]);
        assert_eq!(config.routes[0].when.webhook, ["support"]);
        assert!(config.routes[0].continue_matching);
    }

    fn route_error(route: &str) -> String {
        parse(&format!(
            "{ROUTED}[[routes]]\nname = \"r\"\non = [\"*\"]\n{route}\n"
        ))
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn bad_regex_names_the_route_key() {
        let err = route_error("when = { text = \"(unclosed\" }\nhandler = { kind = \"log\" }");
        assert!(err.contains("routes[0] (name = \"r\").when.text"), "{err}");
        assert!(err.contains("regular expression"), "{err}");
    }

    #[test]
    fn unknown_handler_kind_names_the_choices() {
        let err = route_error("handler = { kind = \"shout\" }");
        assert!(err.contains("routes[0] (name = \"r\").handler"), "{err}");
        assert!(err.contains("unknown variant `shout`"), "{err}");
    }

    #[test]
    fn missing_message_file_names_the_key() {
        let err = route_error("handler = { kind = \"message\", file = \"assets/nope.json\" }");
        assert!(
            err.contains("routes[0] (name = \"r\").handler.file"),
            "{err}"
        );
        assert!(err.contains("assets/nope.json"), "{err}");
    }

    #[test]
    fn unknown_placeholder_names_the_key() {
        let err = route_error("handler = { kind = \"reply\", text = \"Hi {{contact.nam}}\" }");
        assert!(
            err.contains("routes[0] (name = \"r\").handler.text"),
            "{err}"
        );
        assert!(err.contains("contact.nam"), "{err}");
    }

    #[test]
    fn sending_handlers_need_an_api_key() {
        let err = parse(&format!(
            "{MINIMAL}[[routes]]\nname = \"r\"\non = \"*\"\nhandler = {{ kind = \"mark_read\" }}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("kapso.api_key"), "{err}");
    }

    #[test]
    fn misspelt_event_type_names_file_route_value_and_suggestion() {
        let err = parse(&format!(
            "{ROUTED}[[routes]]\nname = \"greet\"\non = \"whatsapp.mesage.received\"\nhandler = {{ kind = \"log\" }}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("test.toml: "), "{err}");
        assert!(err.contains("`routes[0] (name = \"greet\").on`"), "{err}");
        assert!(err.contains("`whatsapp.mesage.received`"), "{err}");
        assert!(
            err.contains("did you mean `whatsapp.message.received`?"),
            "{err}"
        );
    }

    #[test]
    fn event_patterns_must_match_a_known_type() {
        let route = |on: &str| {
            parse(&format!(
                "{ROUTED}[[routes]]\nname = \"r\"\non = \"{on}\"\nhandler = {{ kind = \"log\" }}\n"
            ))
        };
        let err = route("whatsapp.mesage.*").unwrap_err().to_string();
        assert!(err.contains("did you mean `whatsapp.message.*`?"), "{err}");
        let err = route("orders.*").unwrap_err().to_string();
        assert!(err.contains("matches no Kapso event type"), "{err}");
        assert!(err.contains("`whatsapp.message.*`"), "{err}");
        for on in [
            "*",
            "whatsapp.*",
            "whatsapp.message.*",
            "workflow.execution.failed",
        ] {
            assert!(route(on).is_ok(), "{on}: {:?}", route(on).err());
        }
    }

    #[test]
    fn misspelt_direction_gets_a_suggestion() {
        let err = route_error("when = { direction = \"inbund\" }\nhandler = { kind = \"log\" }");
        assert!(
            err.contains("routes[0] (name = \"r\").when.direction"),
            "{err}"
        );
        assert!(err.contains("did you mean `inbound`?"), "{err}");
    }

    #[test]
    fn errors_found_while_deserialising_name_the_entry_too() {
        let err = parse(&format!(
            "{ROUTED}[[webhooks]]\nname = \"sales\"\nsecrets = [\"s\"]\nkind = \"slack\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`webhooks[1] (name = \"sales\").kind`"),
            "{err}"
        );
        let err = parse(&format!(
            "{ROUTED}[[routes]]\non = \"*\"\nhandler = {{ kind = \"log\" }}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`routes[0]`"),
            "an unnamed entry keeps its index: {err}"
        );
    }

    #[test]
    fn unknown_handler_option_is_rejected() {
        let err = route_error("handler = { kind = \"log\", colour = \"red\" }");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn embedded_default_is_valid() {
        let config = Config::parse(EMBEDDED_DEFAULT_NAME, EMBEDDED_DEFAULT, |_| None);
        assert!(config.is_ok(), "{config:?}");
    }
}
