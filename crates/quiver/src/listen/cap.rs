//! `--max-connections`: one count across every listener, so that slow or idle clients cannot
//! take every file descriptor. Over the cap a new connection is accepted and closed at once
//! (the kernel's backlog would otherwise hold it, unanswered, and the client would wait for
//! nothing); connections already open keep working.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use quiver_telemetry::connections::ListenerMetrics;

/// Descriptors kept back from the default cap for model files, logs and the engines' own.
const RESERVED_FDS: u64 = 64;

/// The count of open connections against the cap.
#[derive(Debug)]
pub struct ConnectionCap {
    open: AtomicUsize,
    max: usize,
    /// When (seconds since the epoch) the last refusal was logged: at most one line a
    /// second, however fast connections are refused.
    warned: AtomicU64,
}

/// One connection's place under the cap, given back when the connection is dropped.
#[derive(Debug)]
pub struct Admission {
    cap: Arc<ConnectionCap>,
    metrics: ListenerMetrics,
}

impl ConnectionCap {
    /// A cap of `max` connections.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
            warned: AtomicU64::new(0),
        })
    }

    /// The most connections allowed.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A place for a new connection of the listener `metrics` counts, or `None` (counted and,
    /// once a second, logged) when the cap is reached.
    pub fn admit(self: &Arc<Self>, metrics: &ListenerMetrics) -> Option<Admission> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            metrics.refused.increment(1);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if self.warned.swap(now, Ordering::Relaxed) != now {
                tracing::warn!(
                    max = self.max,
                    "refusing new connections: --max-connections are open"
                );
            }
            return None;
        }
        metrics.open.increment(1.0);
        Some(Admission {
            cap: Arc::clone(self),
            metrics: metrics.clone(),
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.cap.open.fetch_sub(1, Ordering::AcqRel);
        self.metrics.open.decrement(1.0);
    }
}

/// Raises the process's file descriptor limit to its hard limit, as servers do (connections
/// are descriptors), and returns the limit in force.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::debug!("cannot raise the file descriptor limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The default `--max-connections` under a descriptor limit of `fd_limit`: the limit less what
/// models, logs and engines need, [`RESERVED_FDS`] and a tenth.
pub fn default_max_connections(fd_limit: u64) -> usize {
    let room = fd_limit
        .saturating_sub(RESERVED_FDS + fd_limit / 10)
        .max(16);
    usize::try_from(room).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_shared_and_freed_on_drop() {
        let cap = ConnectionCap::new(2);
        let rest = ListenerMetrics::new("rest");
        let grpc = ListenerMetrics::new("grpc");
        let a = cap.admit(&rest);
        let b = cap.admit(&grpc);
        assert!(a.is_some() && b.is_some());
        assert!(cap.admit(&rest).is_none());
        drop(b);
        assert!(cap.admit(&rest).is_some());
    }

    #[test]
    fn the_default_leaves_room_for_files() {
        assert_eq!(default_max_connections(20_000), 20_000 - 64 - 2_000);
        assert_eq!(default_max_connections(1024), 1024 - 64 - 102);
        assert_eq!(default_max_connections(10), 16);
        assert!(raise_fd_limit() >= 16);
    }
}
