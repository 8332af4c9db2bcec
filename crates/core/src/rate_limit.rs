//! Request-rate limits per client (`--rate-limit`, `--rate-limit-burst`): each client — its
//! token's name when tokens are on, else its address — may send `rate` requests a second on
//! average and `burst` at once. Beyond that a request is refused at once with how long to wait.
//!
//! The arithmetic is the generic cell rate algorithm (one timestamp per client, no timer). It is
//! written here, a dozen lines, rather than taken from `governor`, whose clock and keyed-store
//! dependencies would cost more build than the algorithm; the per-client store is `moka`, which
//! the response cache already uses, bounded in size and forgetting clients idle for a minute.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Clients remembered at once; beyond it the least recently seen are forgotten (they start again
/// with a full burst, which errs on the side of serving).
const MAX_CLIENTS: u64 = 100_000;
/// A client not seen for this long is forgotten.
const IDLE: Duration = Duration::from_secs(60);

/// The per-client limiter.
pub struct RateLimiter {
    /// Time between two requests at the steady rate.
    interval: Duration,
    /// How far ahead of the steady rate a client may get (the burst, less one request).
    tolerance: Duration,
    /// Each client's theoretical arrival time of its next request.
    clients: moka::sync::Cache<Arc<str>, Arc<Mutex<Instant>>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("interval", &self.interval)
            .field("tolerance", &self.tolerance)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// `rate` requests a second on average (> 0), `burst` (>= 1) at once.
    pub fn new(rate: f64, burst: u32) -> Self {
        let interval = Duration::from_secs_f64(1.0 / rate.max(1e-9));
        Self {
            interval,
            tolerance: interval.saturating_mul(burst.max(1) - 1),
            clients: moka::sync::Cache::builder()
                .max_capacity(MAX_CLIENTS)
                .time_to_idle(IDLE)
                .build(),
        }
    }

    /// Whether `client` may send a request now; if not, how long until it may.
    pub fn check(&self, client: &Arc<str>) -> Result<(), Duration> {
        self.check_at(client, Instant::now())
    }

    fn check_at(&self, client: &Arc<str>, now: Instant) -> Result<(), Duration> {
        let next = self
            .clients
            .get_with_by_ref(client, || Arc::new(Mutex::new(now)));
        let mut next = next.lock().unwrap_or_else(PoisonError::into_inner);
        let arrival = (*next).max(now);
        let ahead = arrival.saturating_duration_since(now);
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        *next = arrival + self.interval;
        Ok(())
    }
}

/// A `Retry-After` value: whole seconds, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate() {
        let limiter = RateLimiter::new(10.0, 3);
        let client: Arc<str> = "a".into();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at(&client, start).is_ok());
        }
        let wait = limiter.check_at(&client, start).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // A tenth of a second later, one more.
        let later = start + Duration::from_millis(100);
        assert!(limiter.check_at(&client, later).is_ok());
        assert!(limiter.check_at(&client, later).is_err());
        // Another client has its own allowance.
        let other: Arc<str> = "b".into();
        assert!(limiter.check_at(&other, later).is_ok());
        // After a long pause the burst is whole again, no more.
        let rested = start + Duration::from_secs(10);
        for _ in 0..3 {
            assert!(limiter.check_at(&client, rested).is_ok());
        }
        assert!(limiter.check_at(&client, rested).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_a_second() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2100)), 3);
    }
}
