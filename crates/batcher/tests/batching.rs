//! The batcher with a real engine (tract) and real models: every request gets exactly its own
//! rows, batches larger than one form under concurrency, a full queue refuses at once.

#![allow(clippy::unwrap_used)] // a test may panic

use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_batcher::{BatchError, BatchPolicy, Company, Queue};
use quiver_engine_api::{Engine, EngineError, EngineOptions, Session, Tensor, TensorData};
use quiver_engine_tract::TractEngine;
use quiver_telemetry::VersionMetrics;
use quiver_test_support::{conformance, fixture_model};

fn session(path: &std::path::Path) -> Arc<dyn Session> {
    Arc::from(
        TractEngine::new(1)
            .load(path, &EngineOptions::default())
            .unwrap(),
    )
}

fn metrics(model: &str) -> Arc<VersionMetrics> {
    Arc::new(VersionMetrics::new(model, 1))
}

fn rows(n: usize, seed: usize) -> Tensor {
    let data = (0..n * 64)
        .map(|i| (((i + seed * 131) * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    Tensor::new(vec![n, 64], TensorData::F32(data)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_its_own_rows() {
    let dense = session(&fixture_model("dense"));
    let policy = BatchPolicy {
        max_batch_size: 16,
        max_queue_delay: Duration::from_millis(20),
        preferred_batch_sizes: vec![],
        max_queue_size: 1024,
        pad: Vec::new(),
        inline_max: Duration::ZERO,
    };
    let queue = Arc::new(Queue::start(metrics("dense"), vec![Arc::clone(&dense)], policy).unwrap());
    // 64 clients, each with distinct inputs of 1 to 3 rows.
    let mut clients = Vec::new();
    for client in 0..64 {
        let queue = Arc::clone(&queue);
        let input = rows(1 + client % 3, client);
        clients.push(tokio::spawn(async move {
            let out = queue
                .run(vec![input.clone()], None, Company::Unknown)
                .await
                .unwrap()
                .outputs;
            (input, out)
        }));
    }
    for client in clients {
        let (input, batched) = client.await.unwrap();
        let alone = dense.run(vec![input]).unwrap();
        conformance::close(&batched[0], &alone[0]).unwrap();
        assert_eq!(batched[0].shape(), alone[0].shape());
    }
    let stats = queue.stats();
    assert_eq!(stats.requests, 64);
    assert!(stats.largest_batch > 1, "no batch formed: {stats:?}");
    assert!(stats.batches < 64, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_of_other_shapes_are_not_mixed() {
    let echo = session(&fixture_model("half_plus_two"));
    let policy = BatchPolicy {
        max_batch_size: 8,
        max_queue_delay: Duration::from_millis(20),
        ..BatchPolicy::default()
    };
    let queue = Arc::new(Queue::start(metrics("half_plus_two"), vec![echo], policy).unwrap());
    let mut clients = Vec::new();
    for i in 0..8 {
        let queue = Arc::clone(&queue);
        clients.push(tokio::spawn(async move {
            let x = Tensor::new(vec![1, 3], TensorData::F32(vec![i as f32; 3])).unwrap();
            queue
                .run(vec![x], None, Company::Unknown)
                .await
                .unwrap()
                .outputs
        }));
    }
    for (i, client) in clients.into_iter().enumerate() {
        let out = client.await.unwrap();
        assert_eq!(
            out[0].data(),
            &TensorData::F32(vec![0.5 * i as f32 + 2.0; 3])
        );
    }
    // A scalar cannot be batched; a request over max_batch_size is refused, not split.
    let too_big = Tensor::new(vec![9, 3], TensorData::F32(vec![0.0; 27])).unwrap();
    assert_eq!(
        queue
            .run(vec![too_big], None, Company::Unknown)
            .await
            .unwrap_err(),
        BatchError::TooManyRows { rows: 9, max: 8 }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once_and_recovers() {
    let slow = session(&conformance::model("slow"));
    let policy = BatchPolicy {
        max_batch_size: 0,
        max_queue_size: 2,
        ..BatchPolicy::default()
    };
    let queue = Arc::new(Queue::start(metrics("slow"), vec![slow], policy).unwrap());
    let x = || Tensor::new(vec![1, 256], TensorData::F32(vec![0.1; 256])).unwrap();
    let mut clients = Vec::new();
    for _ in 0..20 {
        let queue = Arc::clone(&queue);
        let input = x();
        clients.push(tokio::spawn(async move {
            let started = Instant::now();
            let result = queue.run(vec![input], None, Company::Unknown).await;
            (result, started.elapsed())
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for client in clients {
        match client.await.unwrap() {
            (Ok(_), _) => ok += 1,
            (Err(BatchError::Overloaded(_)), took) => {
                refused += 1;
                assert!(took < Duration::from_millis(100), "refused after {took:?}");
            }
            (Err(e), _) => panic!("{e}"),
        }
    }
    assert!(ok >= 2 && refused >= 1, "ok {ok}, refused {refused}");
    assert_eq!(ok + refused, 20);
    queue.run(vec![x()], None, Company::Unknown).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_never_runs() {
    let slow = session(&conformance::model("slow"));
    let queue =
        Arc::new(Queue::start(metrics("slow"), vec![slow], BatchPolicy::default()).unwrap());
    let x = |rows| Tensor::new(vec![rows, 256], TensorData::F32(vec![0.1; rows * 256])).unwrap();
    // Occupy the only instance and queue one more behind it: once one request is seen waiting,
    // the instance is surely busy (however slowly this machine schedules the tasks), and a
    // request queued now with a 1 ms deadline expires while it waits. The busy requests are
    // large so that the one waiting stays seen for long enough (a loaded machine may leave this
    // task unpolled for a while).
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let queue = Arc::clone(&queue);
            let input = x(32);
            tokio::spawn(async move { queue.run(vec![input], None, Company::Unknown).await })
        })
        .collect();
    let started = Instant::now();
    while queue.depth() != 1 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the two requests never queued"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let deadline = Some(Instant::now() + Duration::from_millis(1));
    assert_eq!(
        queue
            .run(vec![x(4)], deadline, Company::Unknown)
            .await
            .unwrap_err(),
        BatchError::DeadlineExceeded
    );
    for request in busy {
        request.await.unwrap().unwrap();
    }
    assert_eq!(queue.stats().requests, 2, "the expired request did not run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_the_engine_cannot_take_fail_their_own_request_not_the_batch() {
    // tract cannot hold string bytes that are not UTF-8; one such request in a batch of eight
    // is refused alone, the other seven are answered.
    let echo = session(&fixture_model("echo_bytes"));
    let policy = BatchPolicy {
        max_batch_size: 8,
        // Long enough that the eight requests surely meet: the batch closes when it is full.
        max_queue_delay: Duration::from_secs(5),
        ..BatchPolicy::default()
    };
    let queue = Arc::new(Queue::start(metrics("echo_bytes"), vec![echo], policy).unwrap());
    let mut clients = Vec::new();
    for i in 0..8u8 {
        let queue = Arc::clone(&queue);
        let text = if i == 3 {
            vec![b'a', 0xff]
        } else {
            vec![b'a', 0, i]
        };
        let input = Tensor::new(vec![1], TensorData::String(vec![text])).unwrap();
        clients.push(tokio::spawn(async move {
            let result = queue.run(vec![input.clone()], None, Company::Unknown).await;
            (input, result)
        }));
    }
    for (i, client) in clients.into_iter().enumerate() {
        match client.await.unwrap() {
            (_, Err(BatchError::Engine(EngineError::InvalidInput(m)))) if i == 3 => {
                assert!(m.contains("'text'") && m.contains("UTF-8"), "{m}");
            }
            (input, Ok(answer)) if i != 3 => assert_eq!(answer.outputs, [input]),
            (_, other) => panic!("request {i}: {other:?}"),
        }
    }
    let stats = queue.stats();
    assert_eq!((stats.batches, stats.largest_batch), (1, 8), "{stats:?}");
}

/// A session that notes the thread each call ran on and the most calls it ever ran at once,
/// taking at least `pause` a call.
struct Watched {
    inner: Arc<dyn Session>,
    pause: Duration,
    threads: std::sync::Mutex<Vec<String>>,
    running: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl Watched {
    fn new(inner: Arc<dyn Session>, pause: Duration) -> Arc<Self> {
        Arc::new(Self {
            inner,
            pause,
            threads: std::sync::Mutex::new(Vec::new()),
            running: 0.into(),
            most: 0.into(),
        })
    }

    fn threads(&self) -> Vec<String> {
        self.threads.lock().unwrap().clone()
    }
}

impl Session for Watched {
    fn signature(&self) -> &quiver_engine_api::ModelSignature {
        self.inner.signature()
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        let name = std::thread::current().name().unwrap_or("").to_owned();
        self.threads.lock().unwrap().push(name);
        std::thread::sleep(self.pause);
        let out = self.inner.run(inputs);
        self.running.fetch_sub(1, SeqCst);
        out
    }
}

/// A policy under which a model counts as quick on any machine, however loaded.
fn quick() -> BatchPolicy {
    BatchPolicy {
        inline_max: Duration::from_secs(1),
        ..BatchPolicy::default()
    }
}

fn three(value: f32) -> Tensor {
    Tensor::new(vec![1, 3], TensorData::F32(vec![value; 3])).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_model_runs_a_lone_request_on_the_callers_thread() {
    let watched = Watched::new(session(&fixture_model("half_plus_two")), Duration::ZERO);
    let queue = Queue::start(
        metrics("half_plus_two"),
        vec![Arc::clone(&watched) as Arc<dyn Session>],
        quick(),
    )
    .unwrap();
    // Before its first call the model's time is not known: the engine thread runs it.
    let first = queue.run(vec![three(1.0)], None, Company::Alone).await;
    // The engine thread answers before it gives its session back; a client's next request
    // comes a network round trip later, by when the model is idle again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Known quick now: a lone request runs here, one in company still on the engine thread.
    let alone = queue.run(vec![three(2.0)], None, Company::Alone).await;
    let among = queue.run(vec![three(3.0)], None, Company::Unknown).await;
    for (answer, x) in [(first, 1.0), (alone, 2.0), (among, 3.0)] {
        let answer = answer.unwrap();
        assert_eq!(
            answer.outputs[0].data(),
            &TensorData::F32(vec![0.5 * x + 2.0; 3])
        );
    }
    let threads = watched.threads();
    assert!(
        threads[0].starts_with("quiver-half_plus_two-"),
        "{threads:?}"
    );
    assert!(!threads[1].starts_with("quiver-"), "{threads:?}");
    assert!(
        threads[2].starts_with("quiver-half_plus_two-"),
        "{threads:?}"
    );
    // Every call is counted alike.
    assert_eq!(queue.stats().requests, 3);
    assert_eq!(queue.stats().batches, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_batching_model_keeps_its_requests_on_the_engine_threads() {
    // Slower than a runtime thread may be held up for (by default).
    let slow = Watched::new(
        session(&fixture_model("half_plus_two")),
        Duration::from_millis(2),
    );
    let queue = Queue::start(
        metrics("half_plus_two"),
        vec![Arc::clone(&slow) as Arc<dyn Session>],
        BatchPolicy::default(),
    )
    .unwrap();
    for i in 0..3 {
        queue
            .run(vec![three(i as f32)], None, Company::Alone)
            .await
            .unwrap();
    }
    assert!(
        slow.threads().iter().all(|t| t.starts_with("quiver-")),
        "{:?}",
        slow.threads()
    );
    // A batching model: a lone request may yet be joined by others within the delay.
    let batching = Watched::new(session(&fixture_model("half_plus_two")), Duration::ZERO);
    let policy = BatchPolicy {
        max_batch_size: 8,
        max_queue_delay: Duration::from_micros(100),
        ..quick()
    };
    let queue = Queue::start(
        metrics("half_plus_two"),
        vec![Arc::clone(&batching) as Arc<dyn Session>],
        policy,
    )
    .unwrap();
    for i in 0..3 {
        queue
            .run(vec![three(i as f32)], None, Company::Alone)
            .await
            .unwrap();
    }
    assert!(
        batching.threads().iter().all(|t| t.starts_with("quiver-")),
        "{:?}",
        batching.threads()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_run_inline_and_queued_never_exceed_the_instances() {
    // Each call holds its instance a little: quick enough to run inline, long enough to overlap.
    let watched = Watched::new(
        session(&fixture_model("half_plus_two")),
        Duration::from_micros(20),
    );
    let queue = Arc::new(
        Queue::start(
            metrics("half_plus_two"),
            vec![Arc::clone(&watched) as Arc<dyn Session>],
            quick(),
        )
        .unwrap(),
    );
    let mut clients = Vec::new();
    for client in 0..4 {
        let queue = Arc::clone(&queue);
        clients.push(tokio::spawn(async move {
            for i in 0..50 {
                // Pauses between calls leave the model idle at times, as a lone caller finds it.
                tokio::time::sleep(Duration::from_micros(100 * (i % 3))).await;
                // Every caller claims to be alone: the pool of one instance still decides.
                let x = (client * 50 + i) as f32;
                let answer = queue
                    .run(vec![three(x)], None, Company::Alone)
                    .await
                    .unwrap();
                assert_eq!(
                    answer.outputs[0].data(),
                    &TensorData::F32(vec![0.5 * x + 2.0; 3])
                );
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let threads = watched.threads();
    let inline = threads.iter().filter(|t| !t.starts_with("quiver-")).count();
    assert!(inline > 0, "nothing ran inline: {threads:?}");
    assert!(inline < threads.len(), "nothing was queued");
    assert_eq!(
        watched.most.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "two calls ran at once on one instance"
    );
    assert_eq!(queue.stats().requests, 200);
}
