//! Circuit breaker per provider: closed → (N consecutive failures) → open for a cool-down →
//! half-open, where one probe decides between closed and open again.

use std::sync::Mutex;
use std::time::Instant;

use super::config::BreakerConfig;

/// The externally visible state (for readiness and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests are refused until the cool-down ends.
    Open,
    /// The cool-down ended: one probe request is allowed.
    HalfOpen,
}

impl BreakerState {
    /// Lower-case name for logs and readiness output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// One provider's breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

/// Permission to make one attempt; report its outcome with [`Permit::success`] or [`Permit::failure`].
/// Dropping it unreported (a cancelled attempt) frees the half-open probe slot.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    reported: bool,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state at `now` (an expired open state reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if now < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make an attempt at `now`; `None` while open (or while the half-open probe is out).
    pub fn try_acquire(&self, now: Instant) -> Option<Permit<'_>> {
        if self.config.failure_threshold == 0 {
            return Some(self.permit(false));
        }
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Some(self.permit(false)),
            State::Open { until } if now < until => None,
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                Some(self.permit(true))
            }
            State::HalfOpen { probing: true } => None,
        }
    }

    fn permit(&self, probe: bool) -> Permit<'_> {
        Permit {
            breaker: self,
            probe,
            reported: false,
        }
    }

    fn on_success(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    fn on_neutral(&self) {
        let mut state = self.lock();
        // The provider answered (a probe's 4xx shows it is reachable again); a closed breaker keeps
        // its count of consecutive unhealthy failures.
        if matches!(*state, State::HalfOpen { .. }) {
            *state = State::Closed { failures: 0 };
        }
    }

    fn on_failure(&self, now: Instant) {
        if self.config.failure_threshold == 0 {
            return;
        }
        let mut state = self.lock();
        let open = State::Open {
            until: now + self.config.cool_down,
        };
        *state = match *state {
            State::Closed { failures } if failures + 1 >= self.config.failure_threshold => open,
            State::Closed { failures } => State::Closed {
                failures: failures + 1,
            },
            // A failed probe (or a late failure while open) re-opens for a full cool-down.
            State::HalfOpen { .. } | State::Open { .. } => open,
        };
    }
}

impl Permit<'_> {
    /// The attempt succeeded (first token received): the breaker closes.
    pub fn success(mut self) {
        self.reported = true;
        self.breaker.on_success();
    }

    /// The attempt failed at `now` in a way that says the provider is unhealthy (see
    /// `AttemptError::counts_against_breaker`).
    pub fn failure(mut self, now: Instant) {
        self.reported = true;
        self.breaker.on_failure(now);
    }

    /// The attempt failed for a reason that says nothing about the provider's health (400, 401, 403:
    /// this request or this key): the failure count is unchanged; a half-open probe closes the breaker,
    /// since the provider answered.
    pub fn neutral(mut self) {
        self.reported = true;
        self.breaker.on_neutral();
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            let mut state = self.breaker.lock();
            if matches!(*state, State::HalfOpen { probing: true }) {
                *state = State::HalfOpen { probing: false };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;

    fn breaker(threshold: u32) -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: threshold,
            cool_down: Duration::from_secs(10),
        })
    }

    #[test]
    fn opens_after_consecutive_failures_and_success_resets_the_count() {
        let b = breaker(3);
        let t0 = Instant::now();
        b.try_acquire(t0).unwrap().failure(t0);
        b.try_acquire(t0).unwrap().failure(t0);
        b.try_acquire(t0).unwrap().success();
        b.try_acquire(t0).unwrap().failure(t0);
        b.try_acquire(t0).unwrap().failure(t0);
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.try_acquire(t0).unwrap().failure(t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(b.try_acquire(t0 + Duration::from_secs(9)).is_none());
    }

    #[test]
    fn half_open_lets_one_probe_through_then_closes_or_reopens() {
        let b = breaker(1);
        let t0 = Instant::now();
        b.try_acquire(t0).unwrap().failure(t0);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        let probe = b.try_acquire(t1).unwrap();
        assert!(b.try_acquire(t1).is_none(), "only one probe at a time");
        probe.failure(t1);
        assert_eq!(b.state(t1), BreakerState::Open);
        assert!(b.try_acquire(t1 + Duration::from_secs(5)).is_none());
        let t2 = t1 + Duration::from_secs(10);
        b.try_acquire(t2).unwrap().success();
        assert_eq!(b.state(t2), BreakerState::Closed);
        assert!(b.try_acquire(t2).is_some());
    }

    #[test]
    fn an_abandoned_probe_frees_the_slot() {
        let b = breaker(1);
        let t0 = Instant::now();
        b.try_acquire(t0).unwrap().failure(t0);
        let t1 = t0 + Duration::from_secs(11);
        drop(b.try_acquire(t1).unwrap());
        assert!(b.try_acquire(t1).is_some());
    }

    #[test]
    fn client_errors_never_open_the_breaker() {
        let b = breaker(2);
        let t0 = Instant::now();
        b.try_acquire(t0).unwrap().failure(t0);
        for _ in 0..10 {
            b.try_acquire(t0).unwrap().neutral();
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.try_acquire(t0).unwrap().failure(t0);
        assert_eq!(
            b.state(t0),
            BreakerState::Open,
            "neutral outcomes neither count nor reset the consecutive failures"
        );
        let t1 = t0 + Duration::from_secs(10);
        b.try_acquire(t1).unwrap().neutral();
        assert_eq!(
            b.state(t1),
            BreakerState::Closed,
            "a probe the provider answered closes it"
        );
    }

    #[test]
    fn threshold_zero_disables_the_breaker() {
        let b = breaker(0);
        let t0 = Instant::now();
        for _ in 0..10 {
            b.try_acquire(t0).unwrap().failure(t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
    }
}
