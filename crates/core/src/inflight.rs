//! The server-wide bound on inference requests in flight (`--max-inflight-requests`). Each
//! version's queue is bounded already (`max_queue_size`); this bounds them together, so that
//! many models under load at once cannot pile up more decoded requests than memory holds.
//! Over the bound a request is refused at once, before its version is looked up, with
//! [`ErrorKind::Overloaded`] (429 / RESOURCE_EXHAUSTED with `Retry-After`): cheap for the server,
//! and a clear signal for the client to back off, where queueing it would only add latency to
//! every admitted request.

use std::sync::atomic::{AtomicUsize, Ordering};

use quiver_telemetry::connections::ServerMetrics;

use crate::{Error, ErrorKind};

/// Counts the requests in flight against the bound.
#[derive(Debug)]
pub struct InflightLimit {
    count: AtomicUsize,
    max: usize,
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
            alone: before == 0,
        })
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
        self.limit.count.fetch_sub(1, Ordering::AcqRel);
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
}
