//! Metrics of the listeners (connections open, refused over `--max-connections`, closed by a
//! timeout) and of the server-wide bound on requests in flight. Every series is registered when
//! its handle is made, at 0, so that an alert on its increase sees the first event.

use metrics::{Counter, Gauge, counter, gauge};

use crate::names;

/// Why a connection was closed for slowness, as the `phase` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// It did not send a request's headers in time (or, new, sent nothing).
    Header,
    /// It sat between requests longer than the idle timeout.
    Idle,
    /// It sent a request's body slower than the body deadline allows.
    Body,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Header => "header",
            Phase::Idle => "idle",
            Phase::Body => "body",
        }
    }
}

/// The handles of one listener (`rest`, `grpc`, `metrics`).
#[derive(Debug, Clone)]
pub struct ListenerMetrics {
    /// Connections open now.
    pub open: Gauge,
    /// Connections refused over the cap.
    pub refused: Counter,
    timed_out: [Counter; 3],
}

impl ListenerMetrics {
    /// Registers the series of `listener`.
    pub fn new(listener: &'static str) -> Self {
        let timed_out = [Phase::Header, Phase::Idle, Phase::Body].map(|phase| {
            let counter = counter!(names::CONNECTIONS_TIMED_OUT_TOTAL,
                names::LISTENER => listener, names::PHASE => phase.as_str());
            counter.absolute(0);
            counter
        });
        let refused = counter!(names::CONNECTIONS_REFUSED_TOTAL, names::LISTENER => listener);
        refused.absolute(0);
        let open = gauge!(names::CONNECTIONS_OPEN, names::LISTENER => listener);
        open.set(0.0);
        Self {
            open,
            refused,
            timed_out,
        }
    }

    /// Counts a connection closed for slowness in `phase`.
    pub fn timed_out(&self, phase: Phase) {
        self.timed_out[phase as usize].increment(1);
    }

    /// The counter of `phase`'s timeouts, for a part that counts them itself.
    pub fn timed_out_counter(&self, phase: Phase) -> metrics::Counter {
        self.timed_out[phase as usize].clone()
    }
}

/// The handles of the server-wide in-flight bound.
#[derive(Debug, Clone)]
pub struct ServerMetrics {
    /// Inference requests in flight now.
    pub inflight: Gauge,
    /// Requests refused over the bound.
    pub rejected: Counter,
}

impl ServerMetrics {
    /// Registers the series.
    pub fn new() -> Self {
        let inflight = gauge!(names::SERVER_INFLIGHT);
        inflight.set(0.0);
        let rejected = counter!(names::SERVER_REJECTED_TOTAL);
        rejected.absolute(0);
        Self { inflight, rejected }
    }
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
