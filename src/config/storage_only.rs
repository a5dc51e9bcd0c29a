//! Only the `[storage]` table of a config file, for commands that just read (or repair) the
//! database: `${VAR}` is expanded inside `[storage]` alone, so webhook secrets and the Kapso API
//! key need not be exported to list events or jobs. Unknown keys in `[storage]` are still
//! rejected, and errors name the file and key as [`Config::load`](super::Config::load) does.

use std::path::Path;

use super::expand::expand_env;
use super::{
    parse_toml, read_file, ConfigError, StorageConfig, EMBEDDED_DEFAULT, EMBEDDED_DEFAULT_NAME,
};

impl StorageConfig {
    /// Reads a config file and returns its `[storage]` (defaults when the table is absent).
    pub fn load_only(path: &Path) -> Result<StorageConfig, ConfigError> {
        let (file, text) = read_file(path)?;
        StorageConfig::parse_only(&file, &text, |var| std::env::var(var).ok())
    }

    /// The `[storage]` of the built-in development configuration.
    pub fn embedded_default() -> Result<StorageConfig, ConfigError> {
        StorageConfig::parse_only(EMBEDDED_DEFAULT_NAME, EMBEDDED_DEFAULT, |var| {
            std::env::var(var).ok()
        })
    }

    /// Parses `text` (named `file` in errors) and returns its `[storage]`, reading `${VAR}`
    /// through `env` only for keys of that table.
    pub fn parse_only(
        file: &str,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<StorageConfig, ConfigError> {
        let mut document: toml::Table = parse_toml(file, text)?;
        let Some(mut storage) = document.remove("storage") else {
            return Ok(StorageConfig::default());
        };
        let mut path = "storage".to_owned();
        expand_env(&mut storage, &mut path, &env).map_err(|(key, var)| {
            ConfigError::MissingEnv {
                file: file.to_owned(),
                key,
                var,
            }
        })?;
        let invalid = |key: String, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            key,
            message,
        };
        let config: StorageConfig = serde_path_to_error::deserialize(storage).map_err(|e| {
            let inner = e.path().to_string();
            let key = if inner == "." {
                "storage".to_owned()
            } else {
                format!("storage.{inner}")
            };
            invalid(key, e.into_inner().to_string())
        })?;
        if config.sqlite_path().is_none() {
            return Err(invalid(
                "storage.url".to_owned(),
                format!(
                    "`{}` is not supported: use `sqlite://PATH`, for example `sqlite://data/switchboard.db`",
                    config.url
                ),
            ));
        }
        config.validate_size_cap(file)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn parse(text: &str) -> Result<StorageConfig, ConfigError> {
        StorageConfig::parse_only("test.toml", text, |var| {
            (var == "DB_DIR").then(|| "/var/lib/sb".to_owned())
        })
    }

    #[test]
    fn other_tables_need_no_variables() {
        let storage = parse(
            "[kapso]\napi_key = \"${KAPSO_API_KEY}\"\n[storage]\nurl = \"sqlite://${DB_DIR}/x.db\"\n[[webhooks]]\nname = \"a\"\nsecrets = [\"${NOPE}\"]\n",
        )
        .expect("only [storage] is expanded");
        assert_eq!(
            storage.sqlite_path(),
            Some(PathBuf::from("/var/lib/sb/x.db"))
        );
    }

    #[test]
    fn errors_name_the_storage_key() {
        let err = parse("[storage]\nurl = \"sqlite://${MISSING}/x.db\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.toml") && err.contains("storage.url"),
            "{err}"
        );
        assert!(err.contains("MISSING"), "{err}");
        let err = parse("[storage]\npath = \"x.db\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `path`"), "{err}");
        let err = parse("[storage]\nurl = \"postgres://x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage.url"), "{err}");
    }

    #[test]
    fn no_storage_table_means_the_defaults() {
        let storage = parse("[server]\nlisten = \"127.0.0.1:1\"\n").expect("valid");
        assert_eq!(
            storage.sqlite_path(),
            Some(PathBuf::from("data/switchboard.db"))
        );
    }
}
