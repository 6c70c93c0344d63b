//! The wire types generated from `spec/` by the spec compiler (`codegen/`), re-exported. This module is the
//! only door to generated code; everything else converts to and from domain types explicitly.

#[allow(missing_docs, clippy::all, clippy::pedantic, unused_qualifications)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/protocol.rs"));
}

pub use generated::{http, ws};

/// Formats a time as the WebSocket envelope's `timestamp`: RFC 3339, whole seconds, UTC.
pub fn ws_timestamp(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Formats a time as the HTTP API's timestamps: RFC 3339 in UTC with milliseconds, trailing zeros trimmed
/// (Go's `RFC3339Nano` of a MongoDB date).
pub fn http_timestamp(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let base = ws_timestamp(at);
    let millis = at.millisecond();
    if millis == 0 {
        return base;
    }
    let fraction = format!("{millis:03}");
    let fraction = fraction.trim_end_matches('0');
    format!("{}.{fraction}Z", &base[..base.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn timestamps_match_the_go_formats() {
        assert_eq!(
            ws_timestamp(datetime!(2026-02-23 10:00:00.75 UTC)),
            "2026-02-23T10:00:00Z"
        );
        assert_eq!(
            http_timestamp(datetime!(2026-03-01 10:00:00.123 UTC)),
            "2026-03-01T10:00:00.123Z"
        );
        assert_eq!(
            http_timestamp(datetime!(2026-03-01 10:00:00.120 UTC)),
            "2026-03-01T10:00:00.12Z"
        );
        assert_eq!(
            http_timestamp(datetime!(2026-03-01 10:00:00 UTC)),
            "2026-03-01T10:00:00Z"
        );
    }
}
