//! `[admin]`: the admin API under `/admin/api` (and later the console), on when a token is set.

use serde::Deserialize;

use super::ConfigError;
use crate::secret::Secret;

/// Fewest characters an admin token may have: it guards replays, retries and every stored
/// message, so it must not be guessable.
pub const MIN_TOKEN_CHARS: usize = 24;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The bearer token every admin request must carry (`Authorization: Bearer ...`); no token:
    /// the admin API is off.
    pub token: Option<Secret>,
}

impl AdminConfig {
    /// Whether the admin API is served.
    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    /// An empty token (`${SWITCHBOARD_ADMIN_TOKEN:-}`) is no token.
    pub(super) fn normalise(&mut self) {
        if self
            .token
            .as_ref()
            .is_some_and(|t| t.expose().trim().is_empty())
        {
            self.token = None;
        }
    }

    pub(super) fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let chars = token.expose().chars().count();
        if chars < MIN_TOKEN_CHARS {
            return Err(ConfigError::Invalid {
                file: file.to_owned(),
                key: "admin.token".to_owned(),
                message: format!(
                    "is {chars} characters long (the value is not shown: it is a secret): use at least {MIN_TOKEN_CHARS} random characters, e.g. the output of `openssl rand -hex 32`, set through an environment variable (token = \"${{SWITCHBOARD_ADMIN_TOKEN}}\")"
                ),
            });
        }
        if token
            .expose()
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::Invalid {
                file: file.to_owned(),
                key: "admin.token".to_owned(),
                message: "contains a space or control character (the value is not shown: it is a secret); an HTTP header cannot carry it: use letters, digits and punctuation only".to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(text: &str) -> Result<Config, String> {
        let text = format!("[[webhooks]]\nname = \"a\"\nsecrets = [\"s\"]\n{text}");
        Config::parse("switchboard.toml", &text, |_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn no_token_means_the_admin_api_is_off() {
        let config = load("").unwrap();
        assert!(!config.admin.enabled());
        let config = load("[admin]\ntoken = \"\"\n").unwrap();
        assert!(!config.admin.enabled(), "an empty token is no token");
    }

    #[test]
    fn a_short_token_is_refused_without_showing_it() {
        let err = load("[admin]\ntoken = \"hunter2-hunter2\"\n").unwrap_err();
        assert!(err.contains("admin.token"), "{err}");
        assert!(err.contains("at least 24"), "{err}");
        assert!(
            !err.contains("hunter2"),
            "the token is never printed: {err}"
        );
    }

    #[test]
    fn a_long_random_token_turns_it_on() {
        let config = load("[admin]\ntoken = \"0123456789abcdef0123456789abcdef\"\n").unwrap();
        assert!(config.admin.enabled());
        assert!(!format!("{:?}", config.admin).contains("0123456789abcdef"));
    }
}
