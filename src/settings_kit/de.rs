//! Serde deserialisers for the forms the Go service's config files use: durations as Go strings or whole
//! seconds, and lists as a TOML array or one comma-separated string.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

use super::{parse_duration, split_list};

/// Reads a Go duration string (`"30s"`, `"2m0s"`) or a whole number of seconds.
struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"30s\" or a whole number of seconds")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        parse_duration(text).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(secs))
    }

    fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
        u64::try_from(secs)
            .map(Duration::from_secs)
            .map_err(|_| E::custom("a duration cannot be negative"))
    }
}

/// `deserialize_with` for a [`Duration`] written as a Go duration string or whole seconds.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

/// [`duration`] for an optional field (use with `#[serde(default)]`).
pub fn option_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

/// A list written as a TOML array or as one comma-separated string.
#[derive(Deserialize)]
#[serde(untagged)]
enum ListForm {
    List(Vec<String>),
    Joined(String),
}

/// `deserialize_with` for a list given as an array or a comma-separated string; items are trimmed and
/// empty ones dropped.
pub fn list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(match ListForm::deserialize(deserializer)? {
        ListForm::List(items) => items
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        ListForm::Joined(text) => split_list(&text),
    })
}

/// [`list`] for an optional field (use with `#[serde(default)]`).
pub fn option_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    list(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Sample {
        #[serde(deserialize_with = "duration")]
        wait: Duration,
        #[serde(deserialize_with = "option_duration")]
        maybe: Option<Duration>,
        #[serde(deserialize_with = "list")]
        items: Vec<String>,
        #[serde(deserialize_with = "option_list")]
        more: Option<Vec<String>>,
    }

    #[test]
    fn durations_take_go_strings_or_seconds_and_lists_take_both_forms() {
        let s: Sample = toml::from_str(
            "wait = \"1m30s\"\nmaybe = 5\nitems = \"a, b,,\"\nmore = [\" c \", \"\"]",
        )
        .unwrap();
        assert_eq!(s.wait, Duration::from_secs(90));
        assert_eq!(s.maybe, Some(Duration::from_secs(5)));
        assert_eq!(s.items, ["a", "b"]);
        assert_eq!(s.more, Some(vec!["c".to_string()]));
        let absent: Sample = toml::from_str("").unwrap();
        assert_eq!((absent.maybe, absent.more), (None, None));
        for bad in ["wait = \"5 parsecs\"", "wait = -1", "wait = true"] {
            assert!(toml::from_str::<Sample>(bad).is_err(), "{bad}");
        }
    }
}
