//! Load history written off the caller's thread: a model loading or failing must never wait on
//! the metadata store, nor fail because it is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use crate::{LoadEvent, MetadataStore};

/// Events waiting to be written; past this, new ones are dropped (and counted).
const CAPACITY: usize = 1024;

/// Writes load events to a store from one background thread, fed by a bounded channel.
///
/// The thread ends once every clone of the writer is dropped and the channel is drained.
#[derive(Clone)]
pub struct HistoryWriter {
    sender: SyncSender<LoadEvent>,
    dropped: Arc<AtomicU64>,
    location: String,
}

impl std::fmt::Debug for HistoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryWriter")
            .field("store", &self.location)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl HistoryWriter {
    /// Starts the writing thread for `store`. Should the thread not start, every event is
    /// dropped (and counted), with an error logged once.
    pub fn spawn(store: Arc<dyn MetadataStore>) -> Self {
        let (sender, receiver) = sync_channel(CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let location = store.location();
        let counter = Arc::clone(&dropped);
        let spawned = std::thread::Builder::new()
            .name("quiver-load-history".into())
            .spawn(move || drain(store.as_ref(), &receiver, &counter));
        if let Err(error) = spawned {
            tracing::error!(store = %location, %error, "cannot start the load-history writer; load events will not be recorded");
        }
        Self {
            sender,
            dropped,
            location,
        }
    }

    /// Queues an event; never blocks. With the queue full (the store slow or down), the event
    /// is dropped and counted.
    pub fn send(&self, event: LoadEvent) {
        match self.sender.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events that never reached the store: dropped with the queue full, or whose write failed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The writing thread: one write per event; a failure is logged once per outage, not once per
/// event (a store down during a rollout would flood the log).
fn drain(store: &dyn MetadataStore, receiver: &Receiver<LoadEvent>, dropped: &AtomicU64) {
    let mut failing_since: Option<u64> = None;
    while let Ok(event) = receiver.recv() {
        match store.record_load(&event) {
            Ok(()) => {
                if let Some(before) = failing_since.take() {
                    let lost = dropped.load(Ordering::Relaxed).saturating_sub(before);
                    tracing::info!(store = %store.location(), lost, "recording load history again");
                }
            }
            Err(error) => {
                if failing_since.is_none() {
                    tracing::warn!(%error, "cannot record load history; dropping events until the store answers");
                    failing_since = Some(dropped.load(Ordering::Relaxed));
                }
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn event(version: u64) -> LoadEvent {
        LoadEvent {
            at_ms: i64::try_from(version).expect("small"),
            replica: "r1".into(),
            model: "m".into(),
            version,
            event: "loaded".into(),
            reason: None,
        }
    }

    #[test]
    fn writes_in_the_background() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::open(&crate::default_url(dir.path())).expect("open the default store");
        let writer = HistoryWriter::spawn(Arc::clone(&store));
        for version in 1..=20 {
            writer.send(event(version));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let history = store.load_history(Some("m"), 100).expect("history");
            if history.len() == 20 {
                assert_eq!(history.first().map(|e| e.version), Some(20), "newest first");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of 20 written",
                history.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(writer.dropped(), 0);
    }

    /// A store that fails every write, slowly.
    #[derive(Debug)]
    struct Broken;

    impl MetadataStore for Broken {
        fn kind(&self) -> &'static str {
            "broken"
        }
        fn location(&self) -> String {
            "nowhere".into()
        }
        fn snapshot(&self) -> Result<crate::Snapshot, crate::MetadataError> {
            Ok(crate::Snapshot::default())
        }
        fn revision(&self) -> Result<i64, crate::MetadataError> {
            Ok(0)
        }
        fn set_policy(
            &self,
            _: &str,
            _: Option<&crate::Value>,
            _: &str,
        ) -> Result<Option<crate::AuditEntry>, crate::MetadataError> {
            Ok(None)
        }
        fn set_label(
            &self,
            _: &str,
            _: &str,
            _: Option<u64>,
            _: &str,
        ) -> Result<Option<crate::AuditEntry>, crate::MetadataError> {
            Ok(None)
        }
        fn audit(
            &self,
            _: i64,
            _: usize,
            _: Option<&str>,
        ) -> Result<Vec<crate::AuditEntry>, crate::MetadataError> {
            Ok(Vec::new())
        }
        fn record_load(&self, _: &LoadEvent) -> Result<(), crate::MetadataError> {
            std::thread::sleep(Duration::from_millis(1));
            Err(crate::MetadataError::Unreachable {
                store: "nowhere".into(),
                message: "down".into(),
            })
        }
        fn load_history(
            &self,
            _: Option<&str>,
            _: usize,
        ) -> Result<Vec<LoadEvent>, crate::MetadataError> {
            Ok(Vec::new())
        }
        fn wait_for_change(&self, _: Duration) -> bool {
            false
        }
    }

    #[test]
    fn never_blocks_and_counts_what_it_drops() {
        let writer = HistoryWriter::spawn(Arc::new(Broken));
        let started = Instant::now();
        for version in 0..5000 {
            writer.send(event(version));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "send blocked: {:?}",
            started.elapsed()
        );
        // Past the queue's capacity at once; every failed write counts as it happens.
        assert!(writer.dropped() >= 5000 - 1024 - 1, "{}", writer.dropped());
        let deadline = Instant::now() + Duration::from_secs(30);
        while writer.dropped() < 5000 {
            assert!(Instant::now() < deadline, "{} dropped", writer.dropped());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
