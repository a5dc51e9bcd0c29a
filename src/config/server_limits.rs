//! `[server]` connection limits: header, body and idle timeouts, the connection cap, and the
//! optional private ops listener.

use super::{ConfigError, ServerConfig};

/// Shortest and longest accepted timeout, in milliseconds.
const TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=600_000;
/// Most connections a listener may hold open.
const MAX_CONNECTIONS_RANGE: std::ops::RangeInclusive<usize> = 1..=1_000_000;

impl ServerConfig {
    /// Checks the timeouts, the connection cap and `ops_listen`.
    pub(super) fn validate_limits(&self, file: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            key: format!("server.{key}"),
            message,
        };
        for (key, value, default) in [
            ("header_timeout_ms", self.header_timeout_ms, 10_000),
            ("body_timeout_ms", self.body_timeout_ms, 10_000),
            ("idle_timeout_ms", self.idle_timeout_ms, 5_000),
        ] {
            if !TIMEOUT_RANGE_MS.contains(&value) {
                return Err(invalid(
                    key,
                    format!("{value} is out of range: use 100 to 600000 (default {default})"),
                ));
            }
        }
        if self.idle_timeout_ms > self.header_timeout_ms {
            return Err(invalid(
                "idle_timeout_ms",
                format!(
                    "{} is above server.header_timeout_ms ({}), which already closes a connection that sends no request headers in time: lower it, or raise header_timeout_ms",
                    self.idle_timeout_ms, self.header_timeout_ms
                ),
            ));
        }
        if !MAX_CONNECTIONS_RANGE.contains(&self.max_connections) {
            return Err(invalid(
                "max_connections",
                format!(
                    "{} is out of range: use 1 to 1000000 (default 4096)",
                    self.max_connections
                ),
            ));
        }
        if self.ops_listen.is_some_and(|ops| ops == self.listen) {
            return Err(invalid(
                "ops_listen",
                format!(
                    "{} is the same address as server.listen: use another port (e.g. 127.0.0.1:9090), or leave it unset to serve /metrics and /readyz on server.listen",
                    self.listen
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const WEBHOOK: &str = "[[webhooks]]\nname = \"support\"\nsecrets = [\"s\"]\n";

    fn parse(server: &str) -> Result<Config, String> {
        Config::parse(
            "test.toml",
            &format!("[server]\n{server}\n{WEBHOOK}"),
            |_| None,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_sane() {
        let config = parse("").expect("valid");
        assert_eq!(config.server.header_timeout_ms, 10_000);
        assert_eq!(config.server.body_timeout_ms, 10_000);
        assert_eq!(config.server.idle_timeout_ms, 5_000);
        assert_eq!(config.server.max_connections, 4096);
        assert_eq!(config.server.ops_listen, None);
    }

    #[test]
    fn keys_are_read() {
        let config = parse(
            "header_timeout_ms = 2000\nbody_timeout_ms = 3000\nidle_timeout_ms = 1000\nmax_connections = 10\nops_listen = \"127.0.0.1:9090\"",
        )
        .expect("valid");
        assert_eq!(config.server.header_timeout_ms, 2000);
        assert_eq!(config.server.body_timeout_ms, 3000);
        assert_eq!(config.server.idle_timeout_ms, 1000);
        assert_eq!(config.server.max_connections, 10);
        assert_eq!(
            config.server.ops_listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9090")
        );
    }

    #[test]
    fn bad_values_name_the_file_the_key_and_the_fix() {
        for (keys, key, fix) in [
            (
                "header_timeout_ms = 0",
                "server.header_timeout_ms",
                "use 100 to 600000",
            ),
            (
                "body_timeout_ms = 9999999",
                "server.body_timeout_ms",
                "use 100 to 600000",
            ),
            (
                "idle_timeout_ms = 20000",
                "server.idle_timeout_ms",
                "lower it",
            ),
            (
                "max_connections = 0",
                "server.max_connections",
                "use 1 to 1000000",
            ),
            (
                "listen = \"127.0.0.1:8080\"\nops_listen = \"127.0.0.1:8080\"",
                "server.ops_listen",
                "use another port",
            ),
        ] {
            let err = parse(keys).expect_err(keys);
            assert!(err.contains("test.toml"), "{err}");
            assert!(err.contains(key), "{err}");
            assert!(err.contains(fix), "{err}");
        }
    }
}
