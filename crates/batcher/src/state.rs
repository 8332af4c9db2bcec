//! The batching logic, with no threads, channels or clocks of its own: [`QueueState`] holds the
//! waiting requests and decides, for a given `now`, whether a batch is ready, which requests it
//! takes, and which requests are dropped (deadline passed, client gone). The worker threads in
//! [`crate::queue`] drive it; the tests here drive it with made-up instants.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a model's requests are batched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Most rows in one batch; 0: the model does not batch (every request runs alone).
    pub max_batch_size: usize,
    /// Longest time the oldest request waits for others to join it.
    pub max_queue_delay: Duration,
    /// Batch sizes to close a batch at as soon as they are reached (ascending).
    pub preferred_batch_sizes: Vec<usize>,
    /// Most requests waiting; the next one is refused.
    pub max_queue_size: usize,
    /// Per input (in the model's order): `Some(value)` lets requests whose dimensions after the
    /// first differ share a batch, padded with `value` to the longest; outputs are cut back to
    /// each request's own lengths. Empty: no input is padded.
    pub pad: Vec<Option<i64>>,
    /// Longest recent engine call (moving average) of a model that does not batch whose lone
    /// requests run on the caller's thread ([`crate::Queue::run`]); zero: never.
    pub inline_max: Duration,
}

/// Default [`BatchPolicy::inline_max`]. A runtime thread busy with a model delays the other
/// connections it serves (the runtime's other threads steal them only once it is); a fifth of
/// a millisecond is about what decoding a large JSON body there costs already.
pub const INLINE_MAX: Duration = Duration::from_micros(200);

impl Default for BatchPolicy {
    fn default() -> Self {
        Self {
            max_batch_size: 0,
            max_queue_delay: Duration::from_micros(500),
            preferred_batch_sizes: Vec::new(),
            max_queue_size: 1024,
            pad: Vec::new(),
            inline_max: INLINE_MAX,
        }
    }
}

/// One waiting request.
#[derive(Debug)]
pub struct Entry<T> {
    /// What the caller queued (the inputs and the way to answer).
    pub item: T,
    /// Rows (size of dimension 0) the request brings.
    pub rows: usize,
    /// Requests batch together only when their keys are equal: the inputs' shapes without
    /// dimension 0, so tensors can be concatenated.
    pub key: Vec<usize>,
    /// When it was queued.
    pub queued_at: Instant,
    /// When its answer stops being useful.
    pub deadline: Option<Instant>,
}

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// `max_queue_size` requests are already waiting.
    Full,
    /// The request has more rows than `max_batch_size`.
    TooManyRows {
        /// Rows in the request.
        rows: usize,
        /// The model's `max_batch_size`.
        max: usize,
    },
}

/// What a worker should do next.
#[derive(Debug)]
pub enum Next<T> {
    /// Run these requests as one batch, in this order.
    Batch(Vec<Entry<T>>),
    /// Nothing is ready; look again at this instant (or when a request arrives).
    WaitUntil(Instant),
    /// The queue is empty.
    Idle,
}

/// Requests taken out of the queue without running.
#[derive(Debug)]
pub struct Dropped<T> {
    /// Deadline passed while waiting: answer "deadline exceeded".
    pub expired: Vec<Entry<T>>,
    /// The client went away: nobody to answer.
    pub cancelled: Vec<Entry<T>>,
}

impl<T> Default for Dropped<T> {
    fn default() -> Self {
        Self {
            expired: Vec::new(),
            cancelled: Vec::new(),
        }
    }
}

/// The waiting requests of one model version and the rules that batch them.
#[derive(Debug)]
pub struct QueueState<T> {
    policy: BatchPolicy,
    waiting: VecDeque<Entry<T>>,
    /// Rows of all waiting requests.
    rows: usize,
}

impl<T> QueueState<T> {
    /// An empty queue under `policy`.
    pub fn new(policy: BatchPolicy) -> Self {
        Self {
            policy,
            waiting: VecDeque::new(),
            rows: 0,
        }
    }

    /// The rules in force.
    pub fn policy(&self) -> &BatchPolicy {
        &self.policy
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether no request waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Queues a request, or says why not (the caller answers at once).
    pub fn push(&mut self, entry: Entry<T>) -> Result<(), (Refused, Entry<T>)> {
        let max = self.policy.max_batch_size;
        if max > 0 && entry.rows > max {
            let rows = entry.rows;
            return Err((Refused::TooManyRows { rows, max }, entry));
        }
        if self.waiting.len() >= self.policy.max_queue_size {
            return Err((Refused::Full, entry));
        }
        self.rows += entry.rows;
        self.waiting.push_back(entry);
        Ok(())
    }

    /// Whether the request just pushed may have made a batch ready, so a waiting worker should
    /// look now rather than at the time it set: the queue was empty (the delay starts), batching
    /// is off, or the waiting rows reach the maximum or a preferred size. Waking a worker for
    /// every request of a filling batch would cost a context switch each — more than batching
    /// saves on a tiny model.
    pub fn worth_a_look(&self) -> bool {
        let max = self.policy.max_batch_size;
        max == 0
            || self.waiting.len() == 1
            || self.rows >= max
            || self.policy.preferred_batch_sizes.contains(&self.rows)
    }

    /// Removes what must not run (deadline passed before `now`, or `cancelled`), then decides.
    ///
    /// A batch starts with the oldest request and takes, in arrival order, every later request
    /// with the same key while the rows fit in `max_batch_size`. It is ready when it is full,
    /// when its rows reach a preferred size (it then closes at the largest one reached), or
    /// when its oldest request has waited `max_queue_delay`. Without batching, the oldest
    /// request is ready alone.
    pub fn next(&mut self, now: Instant, cancelled: impl Fn(&T) -> bool) -> (Next<T>, Dropped<T>) {
        let dropped = self.drop_dead(now, cancelled);
        let Some(oldest) = self.waiting.front() else {
            return (Next::Idle, dropped);
        };
        let max = self.policy.max_batch_size;
        if max == 0 {
            let batch: Vec<Entry<T>> = self.waiting.pop_front().into_iter().collect();
            self.rows -= batch.iter().map(|e| e.rows).sum::<usize>();
            return (Next::Batch(batch), dropped);
        }
        // Walk the compatible requests: `taken` are their positions, `preferred_at` how many of
        // them make the largest preferred size reached exactly.
        let key = &oldest.key;
        let mut rows = 0;
        let mut taken = Vec::new();
        let mut preferred_at = None;
        for (position, entry) in self.waiting.iter().enumerate() {
            if entry.key != *key || rows + entry.rows > max {
                continue;
            }
            rows += entry.rows;
            taken.push(position);
            if self.policy.preferred_batch_sizes.contains(&rows) {
                preferred_at = Some(taken.len());
            }
            if rows == max {
                break;
            }
        }
        let ready_at = oldest.queued_at + self.policy.max_queue_delay;
        let count = if rows == max || now >= ready_at {
            taken.len()
        } else if let Some(count) = preferred_at {
            count
        } else {
            return (Next::WaitUntil(ready_at), dropped);
        };
        let mut batch = Vec::with_capacity(count);
        // Remove from the back so earlier positions stay valid, then restore arrival order.
        for &position in taken[..count].iter().rev() {
            if let Some(entry) = self.waiting.remove(position) {
                batch.push(entry);
            }
        }
        batch.reverse();
        self.rows -= batch.iter().map(|e| e.rows).sum::<usize>();
        (Next::Batch(batch), dropped)
    }

    /// Takes every waiting request out (the queue is shutting down without a worker).
    pub fn drain(&mut self) -> Vec<Entry<T>> {
        self.rows = 0;
        self.waiting.drain(..).collect()
    }

    fn drop_dead(&mut self, now: Instant, cancelled: impl Fn(&T) -> bool) -> Dropped<T> {
        let mut dropped = Dropped::default();
        if self
            .waiting
            .iter()
            .all(|e| e.deadline.is_none_or(|d| d > now) && !cancelled(&e.item))
        {
            return dropped;
        }
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        for entry in self.waiting.drain(..) {
            if cancelled(&entry.item) {
                dropped.cancelled.push(entry);
            } else if entry.deadline.is_some_and(|d| d <= now) {
                dropped.expired.push(entry);
            } else {
                kept.push_back(entry);
            }
        }
        self.rows = kept.iter().map(|e| e.rows).sum();
        self.waiting = kept;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy(max: usize, preferred: &[usize]) -> BatchPolicy {
        BatchPolicy {
            max_batch_size: max,
            max_queue_delay: 10 * MS,
            preferred_batch_sizes: preferred.to_vec(),
            max_queue_size: 4,
            pad: Vec::new(),
            inline_max: Duration::ZERO,
        }
    }

    fn entry(id: u32, rows: usize, at: Instant) -> Entry<u32> {
        Entry {
            item: id,
            rows,
            key: vec![3],
            queued_at: at,
            deadline: None,
        }
    }

    fn ids(next: Next<u32>) -> Vec<u32> {
        match next {
            Next::Batch(batch) => batch.into_iter().map(|e| e.item).collect(),
            other @ (Next::WaitUntil(_) | Next::Idle) => panic!("expected a batch, got {other:?}"),
        }
    }

    fn never(_: &u32) -> bool {
        false
    }

    #[test]
    fn closes_when_full() {
        let t0 = Instant::now();
        let mut q = QueueState::new(policy(4, &[]));
        q.push(entry(1, 1, t0)).unwrap();
        q.push(entry(2, 2, t0)).unwrap();
        assert!(matches!(q.next(t0, never).0, Next::WaitUntil(t) if t == t0 + 10 * MS));
        q.push(entry(3, 1, t0)).unwrap();
        assert_eq!(ids(q.next(t0, never).0), [1, 2, 3]);
        assert!(q.is_empty());
    }

    #[test]
    fn wakes_a_worker_only_when_a_batch_may_be_ready() {
        let t0 = Instant::now();
        let mut q = QueueState::new(policy(4, &[3]));
        q.push(entry(1, 1, t0)).unwrap();
        assert!(q.worth_a_look(), "the first request starts the delay");
        q.push(entry(2, 1, t0)).unwrap();
        assert!(!q.worth_a_look());
        q.push(entry(3, 1, t0)).unwrap();
        assert!(q.worth_a_look(), "a preferred size");
        q.push(entry(4, 1, t0)).unwrap();
        assert!(q.worth_a_look(), "full");
        assert_eq!(ids(q.next(t0, never).0), [1, 2, 3, 4]);
        assert!(q.is_empty());
        q.push(entry(5, 1, t0)).unwrap();
        assert!(q.worth_a_look());
    }

    #[test]
    fn closes_after_the_delay_of_the_oldest() {
        let t0 = Instant::now();
        let mut q = QueueState::new(policy(8, &[]));
        q.push(entry(1, 1, t0)).unwrap();
        q.push(entry(2, 1, t0 + 5 * MS)).unwrap();
        assert!(matches!(q.next(t0 + 9 * MS, never).0, Next::WaitUntil(t) if t == t0 + 10 * MS));
        assert_eq!(ids(q.next(t0 + 10 * MS, never).0), [1, 2]);
        assert!(matches!(q.next(t0 + 10 * MS, never).0, Next::Idle));
    }

    #[test]
    fn closes_at_the_largest_preferred_size_reached() {
        let t0 = Instant::now();
        let mut q = QueueState::new(policy(8, &[2, 4]));
        q.push(entry(1, 1, t0)).unwrap();
        assert!(matches!(q.next(t0, never).0, Next::WaitUntil(_)));
        q.push(entry(2, 1, t0)).unwrap();
        q.push(entry(3, 1, t0)).unwrap();
        // 3 rows: 2 was reached on the way, 4 not yet: close at 2, leave the third.
        assert_eq!(ids(q.next(t0, never).0), [1, 2]);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn without_batching_each_request_runs_alone_at_once() {
        let t0 = Instant::now();
        let mut q = QueueState::new(policy(0, &[]));
        q.push(entry(1, 5, t0)).unwrap();
        q.push(entry(2, 1, t0)).unwrap();
        assert_eq!(ids(q.next(t0, never).0), [1]);
        assert_eq!(ids(q.next(t0, never).0), [2]);
    }

    #[test]
    fn never_mixes_shapes_and_keeps_arrival_order() {
        let t0 = Instant::now();
        let mut q = QueueState::new(policy(8, &[]));
        q.push(entry(1, 1, t0)).unwrap();
        let mut other = entry(2, 1, t0);
        other.key = vec![4];
        q.push(other).unwrap();
        q.push(entry(3, 2, t0)).unwrap();
        let later = t0 + 10 * MS;
        assert_eq!(ids(q.next(later, never).0), [1, 3]);
        assert_eq!(ids(q.next(later, never).0), [2]);
    }

    #[test]
    fn a_request_that_does_not_fit_waits_for_the_next_batch() {
        let t0 = Instant::now();
        let mut q = QueueState::new(policy(4, &[]));
        q.push(entry(1, 3, t0)).unwrap();
        q.push(entry(2, 2, t0)).unwrap();
        q.push(entry(3, 1, t0)).unwrap();
        assert_eq!(ids(q.next(t0, never).0), [1, 3]);
        assert_eq!(ids(q.next(t0 + 10 * MS, never).0), [2]);
    }

    #[test]
    fn drops_expired_and_cancelled_requests_before_compute() {
        let t0 = Instant::now();
        let mut q = QueueState::new(policy(4, &[]));
        let mut expiring = entry(1, 1, t0);
        expiring.deadline = Some(t0 + 5 * MS);
        q.push(expiring).unwrap();
        q.push(entry(2, 1, t0)).unwrap();
        q.push(entry(3, 1, t0)).unwrap();
        let (next, dropped) = q.next(t0 + 10 * MS, |&id| id == 3);
        assert_eq!(ids(next), [2]);
        assert_eq!(
            dropped.expired.iter().map(|e| e.item).collect::<Vec<_>>(),
            [1]
        );
        assert_eq!(
            dropped.cancelled.iter().map(|e| e.item).collect::<Vec<_>>(),
            [3]
        );
    }

    #[test]
    fn refuses_past_the_queue_size_and_oversized_requests() {
        let t0 = Instant::now();
        let mut q = QueueState::new(policy(4, &[]));
        for id in 0..4 {
            q.push(entry(id, 1, t0)).unwrap();
        }
        assert_eq!(q.push(entry(9, 1, t0)).unwrap_err().0, Refused::Full);
        let mut q = QueueState::new(policy(4, &[]));
        assert_eq!(
            q.push(entry(9, 5, t0)).unwrap_err().0,
            Refused::TooManyRows { rows: 5, max: 4 }
        );
    }
}
