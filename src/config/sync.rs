//! `server.public_url` (where Kapso reaches this server) and the `[sync]` table: how and when
//! switchboard makes the webhooks on Kapso match `[[webhooks]]`.

use serde::Deserialize;

use std::time::Duration;

use super::retention::Age;
use super::webhooks::Problem;
use super::{Config, ServerConfig};

/// `[sync]`: making Kapso's webhooks match `[[webhooks]]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Sync in the background when `serve` starts (needs `server.public_url`).
    pub on_startup: bool,
    /// Also delete webhooks under `{public_url}/webhooks/` that no entry describes.
    pub prune: bool,
    /// First delay before a failed startup sync is tried again; doubles up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// After the startup sync succeeded, sync again this often, so that a webhook Kapso paused
    /// or deleted while the server runs is back within one interval; `"0"`/`"off"`: never.
    pub interval: Age,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            on_startup: true,
            prune: false,
            retry_initial_ms: 1_000,
            retry_max_ms: 300_000,
            interval: Age(Some(Duration::from_secs(5 * 60))),
        }
    }
}

impl ServerConfig {
    /// `{public_url}/webhooks/{name}`: the URL registered with Kapso for webhook `name`.
    pub fn webhook_url(&self, name: &str) -> Option<String> {
        Some(format!("{}/webhooks/{name}", self.public_url.as_deref()?))
    }

    /// `{public_url}/webhooks/`: every URL under it belongs to switchboard.
    pub fn webhooks_prefix(&self) -> Option<String> {
        Some(format!("{}/webhooks/", self.public_url.as_deref()?))
    }
}

/// Drops an empty `public_url` (`${PUBLIC_URL:-}`) and a trailing `/`.
pub(super) fn normalise(config: &mut Config) {
    if let Some(url) = &config.server.public_url {
        let trimmed = url.trim().trim_end_matches('/');
        config.server.public_url = (!trimmed.is_empty()).then(|| trimmed.to_owned());
    }
}

pub(super) fn validate_sync(config: &Config) -> Result<(), Problem> {
    if let Some(url) = &config.server.public_url {
        let parsed = reqwest::Url::parse(url).ok().filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.query().is_none()
                && u.fragment().is_none()
        });
        if parsed.is_none() {
            return Err((
                "server.public_url".to_owned(),
                format!("`{url}` is not an http(s) URL without query: use where Kapso reaches this server, e.g. https://bot.example.com (webhooks are registered at {{public_url}}/webhooks/NAME)"),
            ));
        }
        if config.sync.on_startup && config.kapso.api_key.is_none() {
            return Err((
                "kapso.api_key".to_owned(),
                "webhook sync at startup (server.public_url is set) needs the Kapso API key: set kapso.api_key, or set `on_startup = false` in [sync]".to_owned(),
            ));
        }
    }
    let sync = &config.sync;
    if !(10..=3_600_000).contains(&sync.retry_initial_ms) {
        return Err((
            "sync.retry_initial_ms".to_owned(),
            format!(
                "{} is out of range: use 10 to 3600000 (default 1000)",
                sync.retry_initial_ms
            ),
        ));
    }
    if sync.retry_max_ms < sync.retry_initial_ms || sync.retry_max_ms > 86_400_000 {
        return Err((
            "sync.retry_max_ms".to_owned(),
            format!(
                "{} is out of range: use sync.retry_initial_ms ({}) to 86400000 (default 300000)",
                sync.retry_max_ms, sync.retry_initial_ms
            ),
        ));
    }
    if let Some(interval) = sync.interval.0 {
        if !(Duration::from_secs(10)..=Duration::from_secs(24 * 60 * 60)).contains(&interval) {
            return Err((
                "sync.interval".to_owned(),
                "use \"10s\" to \"1d\" (default \"5m\"), or \"off\" to sync only at startup"
                    .to_owned(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::webhooks::tests::{error, hook, parse};

    #[test]
    fn public_url_gives_webhook_urls_and_empty_means_unset() {
        let config = parse(&format!(
            "[server]\npublic_url = \"https://bot.example.com/sb/\"\n{}",
            hook("")
        ))
        .unwrap();
        assert_eq!(
            config.server.webhook_url("support").as_deref(),
            Some("https://bot.example.com/sb/webhooks/support")
        );
        let config = parse(&format!(
            "[server]\npublic_url = \"${{PUBLIC_URL:-}}\"\n{}",
            hook("")
        ))
        .unwrap();
        assert_eq!(config.server.public_url, None);
        assert_eq!(config.server.webhook_url("support"), None);
        let err = error(&format!(
            "[server]\npublic_url = \"bot.example.com\"\n{}",
            hook("")
        ));
        assert!(err.contains("server.public_url"), "{err}");
    }

    #[test]
    fn startup_sync_needs_an_api_key_unless_turned_off() {
        let text = "[server]\npublic_url = \"https://bot.example.com\"\n[[webhooks]]\nname = \"a\"\nsecrets = [\"${SECRET}\"]\n";
        let err = error(text);
        assert!(err.contains("kapso.api_key"), "{err}");
        assert!(err.contains("on_startup = false"), "{err}");
        assert!(parse(&format!("{text}[sync]\non_startup = false\n")).is_ok());
    }

    #[test]
    fn sync_retry_delays_are_checked() {
        let config = parse(&format!(
            "{}[sync]\nprune = true\nretry_initial_ms = 50\nretry_max_ms = 400\n",
            hook("")
        ))
        .unwrap();
        assert!(config.sync.prune);
        assert_eq!(
            (config.sync.retry_initial_ms, config.sync.retry_max_ms),
            (50, 400)
        );
        let err = error(&format!(
            "{}[sync]\nretry_initial_ms = 500\nretry_max_ms = 100\n",
            hook("")
        ));
        assert!(err.contains("sync.retry_max_ms"), "{err}");
        let err = error(&format!("{}[sync]\nenabled = true\n", hook("")));
        assert!(err.contains("unknown field `enabled`"), "{err}");
    }

    #[test]
    fn kapso_request_limit_defaults_to_the_lowest_plan_and_is_range_checked() {
        assert_eq!(parse(&hook("")).unwrap().kapso.api_requests_per_minute, 100);
        let pro = hook("").replace("[kapso]\n", "[kapso]\napi_requests_per_minute = 500\n");
        assert_eq!(parse(&pro).unwrap().kapso.api_requests_per_minute, 500);
        let zero = hook("").replace("[kapso]\n", "[kapso]\napi_requests_per_minute = 0\n");
        let err = error(&zero);
        assert!(err.contains("kapso.api_requests_per_minute"), "{err}");
        assert!(err.contains("500 pro"), "{err}");
    }

    #[test]
    fn sync_interval_defaults_to_five_minutes_and_can_be_turned_off() {
        use std::time::Duration;
        let config = parse(&hook("")).unwrap();
        assert_eq!(config.sync.interval.0, Some(Duration::from_secs(300)));
        let config = parse(&format!("{}[sync]\ninterval = \"90s\"\n", hook(""))).unwrap();
        assert_eq!(config.sync.interval.0, Some(Duration::from_secs(90)));
        for off in ["\"off\"", "\"0\"", "0"] {
            let config = parse(&format!("{}[sync]\ninterval = {off}\n", hook(""))).unwrap();
            assert_eq!(config.sync.interval.0, None, "{off}");
        }
        let err = error(&format!("{}[sync]\ninterval = \"2s\"\n", hook("")));
        assert!(err.contains("sync.interval"), "{err}");
        assert!(err.contains("\"off\""), "{err}");
        let err = error(&format!("{}[sync]\ninterval = \"5 minutes\"\n", hook("")));
        assert!(err.contains("not an age"), "{err}");
    }
}
