//! Query parameters the handlers parse themselves. [`Raw<T>`] keeps the text of a parameter while the
//! OpenAPI document shows the schema of `T` (an integer, a date-time): poem-openapi never refuses such a
//! parameter, so the handlers can keep the Go service's lenient parsing and answer with the spec's exact
//! 400 texts. Also the lenient number parsing and time parsing those handlers share.

use std::borrow::Cow;
use std::marker::PhantomData;

use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromParameter, ParseResult, Type};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The raw text of a query parameter documented with the schema of `T`.
pub struct Raw<T> {
    text: String,
    _schema: PhantomData<fn() -> T>,
}

impl<T> Raw<T> {
    /// The text as sent (percent-decoded).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl<T: Type> Type for Raw<T> {
    const IS_REQUIRED: bool = true;

    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(&self.text)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(&self.text))
    }
}

impl<T: Type> ParseFromParameter for Raw<T> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Self {
            text: value.to_string(),
            _schema: PhantomData,
        })
    }
}

/// Default page size of the admin lists.
pub const DEFAULT_LIMIT: i64 = 100;

/// Largest page size of the admin lists.
pub const MAX_LIMIT: i64 = 1000;

/// The leading integer of `text` like Go's `fmt.Sscanf("%d")`: optional spaces and sign, then digits
/// (`50abc` is 50). `None` when there are no digits.
pub fn leading_int(text: &str) -> Option<i64> {
    let text = text.trim_start();
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let value: i64 = rest[..digits].parse().unwrap_or(i64::MAX);
    Some(if negative { -value } else { value })
}

/// The effective page size: 0 or less, above [`MAX_LIMIT`] or absent means [`DEFAULT_LIMIT`].
pub fn effective_limit(limit: Option<i64>) -> i64 {
    match limit {
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
        _ => DEFAULT_LIMIT,
    }
}

/// The effective offset: negative or absent means 0.
pub fn effective_offset(offset: Option<i64>) -> i64 {
    offset.unwrap_or(0).max(0)
}

/// A strictly integer parameter (`limit`, `offset` of the newer lists): 400
/// `Invalid query parameter: <name>` when it is not an integer.
pub fn strict_int(param: Option<&Raw<i64>>, name: &str) -> Result<Option<i64>, String> {
    match param {
        None => Ok(None),
        Some(raw) => raw
            .as_str()
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("Invalid query parameter: {name}")),
    }
}

/// An RFC 3339 time.
pub fn rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text.trim(), &Rfc3339).ok()
}

/// A `YYYY-MM-DD` date as midnight UTC.
pub fn day_start(text: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text.trim(), format)
        .ok()
        .map(|d| d.midnight().assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_digits_count_like_go() {
        assert_eq!(leading_int("50abc"), Some(50));
        assert_eq!(leading_int("-3"), Some(-3));
        assert_eq!(leading_int(" 7"), Some(7));
        assert_eq!(leading_int("abc"), None);
        assert_eq!(leading_int(""), None);
        assert_eq!(leading_int("-"), None);
    }

    #[test]
    fn limits_outside_the_range_mean_the_default() {
        assert_eq!(effective_limit(Some(0)), 100);
        assert_eq!(effective_limit(Some(-5)), 100);
        assert_eq!(effective_limit(Some(1001)), 100);
        assert_eq!(effective_limit(Some(1000)), 1000);
        assert_eq!(effective_limit(Some(1)), 1);
        assert_eq!(effective_limit(None), 100);
        assert_eq!(effective_offset(Some(-1)), 0);
        assert_eq!(effective_offset(Some(12)), 12);
    }

    #[test]
    fn times_parse_as_rfc3339_or_dates() {
        assert!(rfc3339("2026-03-01T10:00:00Z").is_some());
        assert!(rfc3339("2026-03-01T10:00:00.5+02:00").is_some());
        assert!(rfc3339("2026-03-01").is_none());
        assert_eq!(
            day_start("2026-03-01"),
            Some(time::macros::datetime!(2026-03-01 00:00 UTC))
        );
        assert!(day_start("yesterday").is_none());
    }
}
