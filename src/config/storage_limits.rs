//! `storage.max_size_mb`: the optional cap on the database file.

use super::{ConfigError, StorageConfig};

/// Smallest and largest accepted cap, in MiB: below 1 MiB the schema and a few deliveries
/// barely fit; 16 TiB is SQLite's own limit with its default 4 KiB pages.
const MAX_SIZE_MB_RANGE: std::ops::RangeInclusive<u64> = 1..=16 * 1024 * 1024;

/// Bytes in one MiB, the unit of `storage.max_size_mb`.
const MIB: u64 = 1024 * 1024;

impl StorageConfig {
    /// The cap on the database file in bytes, when one is set.
    pub fn max_size_bytes(&self) -> Option<u64> {
        self.max_size_mb.map(|mb| mb.saturating_mul(MIB))
    }

    /// Checks `max_size_mb`. A cap below the database's current size is accepted: the server
    /// starts, and writes that need new pages fail until rows are deleted.
    pub(super) fn validate_size_cap(&self, file: &str) -> Result<(), ConfigError> {
        match self.max_size_mb {
            Some(mb) if !MAX_SIZE_MB_RANGE.contains(&mb) => Err(ConfigError::Invalid {
                file: file.to_owned(),
                key: "storage.max_size_mb".to_owned(),
                message: format!(
                    "{mb} is out of range: use {} to {} (MiB), or leave the key out for no cap",
                    MAX_SIZE_MB_RANGE.start(),
                    MAX_SIZE_MB_RANGE.end()
                ),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, StorageConfig};

    const WEBHOOK: &str = "[[webhooks]]\nname = \"a\"\nsecrets = [\"s\"]\n";

    #[test]
    fn absent_means_no_cap_and_a_value_is_read_in_mib() {
        let config = Config::parse("test.toml", WEBHOOK, |_| None).expect("valid");
        assert_eq!(config.storage.max_size_bytes(), None);
        let config = Config::parse(
            "test.toml",
            &format!("{WEBHOOK}[storage]\nmax_size_mb = 512\n"),
            |_| None,
        )
        .expect("valid");
        assert_eq!(config.storage.max_size_bytes(), Some(512 * 1024 * 1024));
    }

    #[test]
    fn an_out_of_range_cap_names_the_file_the_key_and_the_fix() {
        for text in ["max_size_mb = 0", "max_size_mb = 99999999"] {
            let err = Config::parse(
                "test.toml",
                &format!("{WEBHOOK}[storage]\n{text}\n"),
                |_| None,
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.starts_with("test.toml: key `storage.max_size_mb`"),
                "{err}"
            );
            assert!(err.contains("use 1 to 16777216 (MiB)"), "{err}");
        }
        let err = Config::parse(
            "test.toml",
            &format!("{WEBHOOK}[storage]\nmax_size_mb = -5\n"),
            |_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("storage.max_size_mb"), "{err}");
    }

    #[test]
    fn commands_that_read_only_storage_check_it_too() {
        let err = StorageConfig::parse_only("test.toml", "[storage]\nmax_size_mb = 0\n", |_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage.max_size_mb"), "{err}");
    }
}
