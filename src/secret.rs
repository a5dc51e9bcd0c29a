//! A secret value (webhook signing key, API key) that never shows up in logs, `Debug` output or
//! error messages.
//!
//! Deserialising never echoes the value either: serde's usual "invalid type: string \"...\"" or
//! "integer `...`" would print a secret written in the wrong shape (`secrets = "${SECRET}"`), so
//! the errors here name only the kind of value that was found.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Call sites are the few places that must use it: signing and verifying.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// "expected a string, found a number (the value is not shown: it is a secret)".
fn wrong_type<E: de::Error>(expected: &str, found: &str) -> E {
    E::custom(format_args!(
        "expected {expected}, found {found} (the value is not shown: it is a secret)"
    ))
}

/// Implements every `visit_*` serde would otherwise answer with an error that quotes the value.
macro_rules! value_free_visits {
    ($expected:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(wrong_type($expected, "a boolean"))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(wrong_type($expected, "a number"))
        }
        fn visit_i128<E: de::Error>(self, _: i128) -> Result<Self::Value, E> {
            Err(wrong_type($expected, "a number"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(wrong_type($expected, "a number"))
        }
        fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self::Value, E> {
            Err(wrong_type($expected, "a number"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(wrong_type($expected, "a number"))
        }
        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
            Err(wrong_type($expected, "bytes"))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(wrong_type($expected, "nothing"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(wrong_type($expected, "nothing"))
        }
        fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(wrong_type($expected, "an enum"))
        }
    };
}

struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_char<E: de::Error>(self, v: char) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Secret, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Secret, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(wrong_type("a string", "a list"))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(wrong_type("a string", "a table"))
    }

    value_free_visits!("a string");
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// A list of secrets; a single string is taken as a list of one (`secrets = "${SECRET}"`).
pub fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Secret>, D::Error> {
    struct ListVisitor;
    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<Secret>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of strings")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![Secret::new(v)])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<Secret>()? {
                out.push(item);
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(wrong_type("a list of strings", "a table"))
        }
        value_free_visits!("a list of strings");
    }
    deserializer.deserialize_any(ListVisitor)
}

/// HTTP headers, whose values may be credentials (`Authorization`): read as plain strings, but a
/// wrong type never echoes a value.
pub fn header_table<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct TableVisitor;
    impl<'de> Visitor<'de> for TableVisitor {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a table of header names and values")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, Secret>()? {
                out.insert(key, value.0);
            }
            Ok(out)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(wrong_type("a table of header names and values", "a string"))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(wrong_type("a table of header names and values", "a list"))
        }
        value_free_visits!("a table of header names and values");
    }
    deserializer.deserialize_any(TableVisitor)
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_output_hides_the_value() {
        let secret = Secret::new("whsec_very_secret");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert!(!format!("{:?}", vec![secret]).contains("whsec"));
    }

    #[test]
    fn a_secret_of_the_wrong_type_is_not_echoed_in_the_error() {
        let err = serde_json::from_str::<Secret>("73519024")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("73519024"), "{err}");
        assert!(err.contains("found a number"), "{err}");
        let secret: Secret = serde_json::from_str("\"whsec_x\"").unwrap();
        assert_eq!(secret.expose(), "whsec_x");
    }
}
