//! Retiring a version: it leaves the routing table at once (no new request finds it), finishes
//! the requests that hold it, and is then dropped and its memory returned.
//!
//! No thread watches the reference count: the version itself says when the last request let go
//! of it. The manager hands the version a [`Retirement`] before it drops its own reference; it is
//! dropped with the version (by whichever request ends last), and its `Drop` starts the clean-up
//! (trimming the C heap, the `END` state, the log line) on a short-lived thread of its own, so no
//! request pays for it.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use super::VersionState;

/// A flag raised once a retired version has been dropped, that threads can wait for.
#[derive(Clone, Default)]
pub(crate) struct Dropped(Arc<(Mutex<bool>, Condvar)>);

impl Dropped {
    pub(crate) fn raise(&self) {
        *self.0.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.0.1.notify_all();
    }

    pub(crate) fn is_raised(&self) -> bool {
        *self.0.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the flag is raised or `timeout` passes; whether it was raised.
    pub(crate) fn wait_timeout(&self, timeout: std::time::Duration) -> bool {
        let raised = self.0.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (raised, _) = self
            .0
            .1
            .wait_timeout_while(raised, timeout, |raised| !*raised)
            .unwrap_or_else(PoisonError::into_inner);
        *raised
    }

    pub(crate) fn wait(&self) {
        let mut raised = self.0.0.lock().unwrap_or_else(PoisonError::into_inner);
        while !*raised {
            raised = self
                .0
                .1
                .wait(raised)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// What to do once a retired (or replaced) version has been dropped.
pub(crate) struct Retirement {
    model: String,
    version: u64,
    /// The version leaves, rather than being replaced by a reload of itself.
    leaves: bool,
    dropped: Dropped,
}

impl Retirement {
    pub(crate) fn new(model: &str, version: u64, leaves: bool, dropped: Dropped) -> Self {
        Self {
            model: model.to_owned(),
            version,
            leaves,
            dropped,
        }
    }
}

impl Drop for Retirement {
    /// The version is gone: return its memory and raise the flag, on a thread of its own (the
    /// caller may be a request's task on the async runtime).
    fn drop(&mut self) {
        let work = |model: String, version: u64, leaves: bool, dropped: Dropped| {
            crate::memory::release();
            if leaves {
                quiver_telemetry::lifecycle::set_state(&model, version, VersionState::End.as_str());
                tracing::info!(model = %model, version, "model version unloaded");
            }
            dropped.raise();
        };
        let (model, version, leaves) = (std::mem::take(&mut self.model), self.version, self.leaves);
        let dropped = self.dropped.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("quiver-retire-{model}"))
            .spawn({
                let (model, dropped) = (model.clone(), dropped.clone());
                move || work(model, version, leaves, dropped)
            });
        if let Err(e) = spawned {
            tracing::warn!(model = %model, version,
                "no thread to finish retiring the version ({e}); finishing here");
            work(model, version, leaves, dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn finishing_raises_the_flag_that_waiters_wait_for() {
        let dropped = Dropped::default();
        assert!(!dropped.is_raised());
        let waiter = {
            let dropped = dropped.clone();
            std::thread::spawn(move || dropped.wait())
        };
        drop(Retirement::new("m", 1, true, dropped.clone()));
        waiter.join().unwrap();
        assert!(dropped.is_raised());
        assert!(dropped.wait_timeout(Duration::from_millis(1)));
        assert!(!Dropped::default().wait_timeout(Duration::from_millis(1)));
        // Waiting again returns at once.
        let again = std::thread::spawn(move || dropped.wait());
        let started = std::time::Instant::now();
        again.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
