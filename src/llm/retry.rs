//! Retry timing: exponential backoff with full jitter, and `Retry-After` parsing (seconds or HTTP date).

use std::time::{Duration, SystemTime};

use rand::Rng;

use super::config::RetryConfig;

/// Upper bound of the wait before retry number `retry` (1 = the wait after the first failed attempt):
/// `min(max_delay, base_delay * 2^(retry-1))`.
pub fn backoff_ceiling(config: &RetryConfig, retry: u32) -> Duration {
    let exponent = retry.saturating_sub(1).min(31);
    config
        .base_delay
        .checked_mul(1u32 << exponent)
        .map_or(config.max_delay, |d| d.min(config.max_delay))
}

/// Full jitter: a uniform random wait in `[0, ceiling]`.
pub fn full_jitter<R: Rng + ?Sized>(ceiling: Duration, rng: &mut R) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

/// The wait before retry number `retry`: the server's `Retry-After` when it sent one (or `None` when
/// that exceeds `max_delay`: not worth waiting for, move on), else full jitter over the backoff.
pub fn retry_delay<R: Rng + ?Sized>(
    config: &RetryConfig,
    retry: u32,
    retry_after: Option<Duration>,
    rng: &mut R,
) -> Option<Duration> {
    match retry_after {
        Some(wait) if wait > config.max_delay => None,
        Some(wait) => Some(wait),
        None => Some(full_jitter(backoff_ceiling(config, retry), rng)),
    }
}

/// Parses a `Retry-After` value: delay seconds (`"3"`) or an HTTP date, relative to `now` (a date in
/// the past is zero). Fractional seconds, as some proxies send, are accepted.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn reference_policy() -> RetryConfig {
        RetryConfig::default()
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let config = reference_policy();
        assert_eq!(backoff_ceiling(&config, 1), Duration::from_secs(1));
        assert_eq!(backoff_ceiling(&config, 2), Duration::from_secs(2));
        assert_eq!(backoff_ceiling(&config, 3), Duration::from_secs(4));
        assert_eq!(backoff_ceiling(&config, 5), Duration::from_secs(16));
        assert_eq!(backoff_ceiling(&config, 6), Duration::from_secs(30));
        assert_eq!(backoff_ceiling(&config, 60), Duration::from_secs(30));
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_ceiling_and_spreads() {
        let mut rng = StdRng::seed_from_u64(7);
        let ceiling = Duration::from_secs(2);
        let waits: Vec<_> = (0..1000).map(|_| full_jitter(ceiling, &mut rng)).collect();
        assert!(waits.iter().all(|w| *w <= ceiling));
        assert!(waits.iter().any(|w| *w < Duration::from_millis(200)));
        assert!(waits.iter().any(|w| *w > Duration::from_millis(1800)));
        assert_eq!(full_jitter(Duration::ZERO, &mut rng), Duration::ZERO);
    }

    #[test]
    fn retry_after_wins_over_jitter_unless_too_long() {
        let config = reference_policy();
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            retry_delay(&config, 1, Some(Duration::from_secs(7)), &mut rng),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_delay(&config, 1, Some(Duration::from_secs(31)), &mut rng),
            None
        );
        let jittered = retry_delay(&config, 2, None, &mut rng).unwrap();
        assert!(jittered <= Duration::from_secs(2));
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }
}
