//! The server-wide bound on inference requests in flight (`--max-inflight-requests`). Each
//! version's queue is bounded already (`max_queue_size`); this bounds them together, so that
//! many models under load at once cannot pile up more decoded requests than memory holds.
//! Over the bound a request is refused at once, before its version is looked up, with
//! [`ErrorKind::Overloaded`] (429 / RESOURCE_EXHAUSTED with `Retry-After`): cheap for the server,
//! and a clear signal for the client to back off, where queueing it would only add latency to
//! every admitted request.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use quiver_telemetry::connections::ServerMetrics;

use crate::{Error, ErrorKind};

/// The average idle gap between requests (from the server's last answer to the next request's
/// arrival) above which a request that finds the server empty counts as alone
/// ([`quiver_batcher::Company::Alone`]), and may run its model on the runtime thread that
/// decoded it instead of handing it to the model's engine thread.
///
/// Being empty at the instant of arrival is not enough. Under load from several connections the
/// server can fall into answering them one at a time — each request run inline, so none is in
/// flight when the next is read — and a model run on the runtime's threads is slower there
/// (its code and data are cold between network work: 48 µs of server CPU a request instead of
/// 32 µs at concurrency 8 in `bench/RESULTS.md`). The gaps tell the two apart: at concurrency 1
/// the next request comes a client round trip later (40–100 µs on the 2-core machines the
/// benchmarks run on, averaging ~80 µs), while requests already waiting on other connections
/// are read within a few tens of µs (averaging ~30 µs).
pub const QUIET: Duration = Duration::from_micros(50);

/// The most one idle gap counts in the average, so that after a long idle spell a burst of
/// requests takes only a few dozen arrivals to bring the average down.
const GAP_CAP: Duration = Duration::from_millis(1);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Counts the requests in flight against the bound.
#[derive(Debug)]
pub struct InflightLimit {
    count: AtomicUsize,
    max: usize,
    /// Start of the time line `idle_since` counts on.
    epoch: Instant,
    /// When the count last fell to zero, in nanoseconds since `epoch`.
    idle_since: AtomicU64,
    /// Moving average of the idle gaps before a request arrived to an empty server, in
    /// nanoseconds (each gap counted at most [`GAP_CAP`]).
    recent_gap: AtomicU64,
    metrics: ServerMetrics,
}

/// A request's place under the bound, given back when dropped.
#[derive(Debug)]
pub struct Admitted<'a> {
    limit: &'a InflightLimit,
    alone: bool,
}

impl InflightLimit {
    /// A bound of `max` requests.
    pub fn new(max: usize) -> Self {
        Self {
            count: AtomicUsize::new(0),
            max,
            epoch: Instant::now(),
            idle_since: AtomicU64::new(0),
            recent_gap: AtomicU64::new(nanos(GAP_CAP)),
            metrics: ServerMetrics::new(),
        }
    }

    /// A place for one more request, or the error to refuse it with.
    pub fn admit(&self) -> Result<Admitted<'_>, Error> {
        let before = self.count.fetch_add(1, Ordering::AcqRel);
        if before >= self.max {
            self.count.fetch_sub(1, Ordering::AcqRel);
            self.metrics.rejected.increment(1);
            return Err(Error::new(
                ErrorKind::Overloaded,
                format!(
                    "the server is at its limit of {} requests in flight (--max-inflight-requests); try again later",
                    self.max
                ),
            ));
        }
        self.metrics.inflight.increment(1.0);
        Ok(Admitted {
            limit: self,
            alone: before == 0 && self.quiet(),
        })
    }

    /// Folds the idle gap that just ended into the moving average (an eighth of the new
    /// sample; racing callers may lose one, which an average does not miss) and says whether
    /// the server is quiet: its recent gaps average at least [`QUIET`].
    fn quiet(&self) -> bool {
        let now = nanos(self.epoch.elapsed());
        let gap = now
            .saturating_sub(self.idle_since.load(Ordering::Relaxed))
            .min(nanos(GAP_CAP));
        let old = self.recent_gap.load(Ordering::Relaxed);
        let new = old - old / 8 + gap / 8;
        self.recent_gap.store(new, Ordering::Relaxed);
        new >= nanos(QUIET)
    }

    /// Requests in flight now.
    pub fn current(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

impl Admitted<'_> {
    /// Whether no other request was in flight when this one was admitted: what the server knows
    /// of its load, for the engine queue ([`quiver_batcher::Company`]).
    pub fn company(&self) -> quiver_batcher::Company {
        if self.alone {
            quiver_batcher::Company::Alone
        } else {
            quiver_batcher::Company::Unknown
        }
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if self.limit.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            let now = nanos(self.limit.epoch.elapsed());
            self.limit.idle_since.store(now, Ordering::Relaxed);
        }
        self.limit.metrics.inflight.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_refuses_the_one_over_and_frees_on_drop() {
        let limit = InflightLimit::new(2);
        let a = limit.admit();
        let b = limit.admit();
        assert!(a.is_ok() && b.is_ok());
        let refused = limit.admit().err();
        assert_eq!(refused.map(|e| e.kind), Some(ErrorKind::Overloaded));
        assert_eq!(limit.current(), 2);
        drop(a);
        assert!(limit.admit().is_ok());
        drop(b);
        assert_eq!(limit.current(), 0);
    }

    fn alone(limit: &InflightLimit) -> bool {
        limit
            .admit()
            .is_ok_and(|a| a.company() == quiver_batcher::Company::Alone)
    }

    #[test]
    fn a_request_is_alone_only_when_the_server_is_empty_and_has_been_quiet() {
        let limit = InflightLimit::new(8);
        // A server that has seen nothing yet is quiet.
        let first = limit.admit().unwrap();
        assert_eq!(first.company(), quiver_batcher::Company::Alone);
        // With another request in flight, never.
        assert!(!alone(&limit));
        drop(first);
        // Requests arriving back to back, one at a time, bring the average gap down: the
        // server is busy even though it is empty at each arrival.
        let mut back_to_back = 0;
        while alone(&limit) {
            back_to_back += 1;
            assert!(back_to_back < 100, "never counted as busy");
        }
        assert!(
            back_to_back >= 10,
            "busy after only {back_to_back} arrivals"
        );
        // Gaps like a client's round trips at concurrency 1 make it quiet again.
        let mut gaps = 0;
        while !{
            std::thread::sleep(QUIET * 4);
            alone(&limit)
        } {
            gaps += 1;
            assert!(gaps < 20, "never quiet again");
        }
    }
}
