//! Retry timing shared by every outbound call (model providers, the store, notification channels):
//! exponential backoff with a choice of jitter, and `Retry-After` parsing (seconds or HTTP date).

use std::time::{Duration, SystemTime};

use rand::Rng;

/// How the wait before a retry is spread around the exponential ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the ceiling.
    None,
    /// Uniform in `[0, ceiling]` ("full jitter": retries of many clients spread the most).
    Full,
    /// The ceiling plus up to half of it: never shorter than the ceiling, still spread.
    Half,
}

/// Exponential backoff: retry `n` (1 = the wait after the first failed attempt) waits up to
/// `min(max, base * 2^(n-1))`, spread by the jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first retry's ceiling.
    pub base: Duration,
    /// The cap of every ceiling.
    pub max: Duration,
    /// How waits are spread.
    pub jitter: Jitter,
}

impl Backoff {
    /// The ceiling of retry number `retry` (from 1): `min(max, base * 2^(retry-1))`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << exponent)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The wait before retry number `retry` (from 1), jittered with `rng`.
    pub fn delay<R: Rng + ?Sized>(&self, retry: u32, rng: &mut R) -> Duration {
        let ceiling = self.ceiling(retry);
        match self.jitter {
            Jitter::None => ceiling,
            Jitter::Full => uniform_up_to(ceiling, rng),
            Jitter::Half => ceiling + uniform_up_to(ceiling / 2, rng),
        }
    }
}

/// A uniform random wait in `[0, ceiling]`.
fn uniform_up_to<R: Rng + ?Sized>(ceiling: Duration, rng: &mut R) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

/// Parses a `Retry-After` value: delay seconds (`"3"`) or an HTTP date, relative to `now` (a date in the
/// past is zero). Fractional seconds, as some proxies send, are accepted; negative ones are not.
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

/// Milliseconds of `delay`, for logs.
pub fn millis(delay: Duration) -> u64 {
    u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn backoff(jitter: Jitter) -> Backoff {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            jitter,
        }
    }

    #[test]
    fn ceilings_double_from_the_base_up_to_the_cap() {
        let backoff = backoff(Jitter::None);
        assert_eq!(backoff.ceiling(0), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(1), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(2), Duration::from_secs(2));
        assert_eq!(backoff.ceiling(3), Duration::from_secs(4));
        assert_eq!(backoff.ceiling(5), Duration::from_secs(16));
        assert_eq!(backoff.ceiling(6), Duration::from_secs(30));
        assert_eq!(backoff.ceiling(60), Duration::from_secs(30));
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(backoff.delay(3, &mut rng), Duration::from_secs(4));
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_ceiling_and_spreads() {
        let backoff = backoff(Jitter::Full);
        let mut rng = StdRng::seed_from_u64(7);
        let ceiling = Duration::from_secs(2);
        let waits: Vec<_> = (0..1000).map(|_| backoff.delay(2, &mut rng)).collect();
        assert!(waits.iter().all(|w| *w <= ceiling));
        assert!(waits.iter().any(|w| *w < Duration::from_millis(200)));
        assert!(waits.iter().any(|w| *w > Duration::from_millis(1800)));
        assert_eq!(uniform_up_to(Duration::ZERO, &mut rng), Duration::ZERO);
    }

    #[test]
    fn half_jitter_adds_up_to_half_the_ceiling() {
        let backoff = backoff(Jitter::Half);
        let mut rng = StdRng::seed_from_u64(11);
        let waits: Vec<_> = (0..1000).map(|_| backoff.delay(2, &mut rng)).collect();
        assert!(
            waits
                .iter()
                .all(|w| *w >= Duration::from_secs(2) && *w <= Duration::from_secs(3))
        );
        assert!(waits.iter().any(|w| *w > Duration::from_millis(2800)));
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
