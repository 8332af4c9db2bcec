//! Test fixtures and helpers shared by Quiver's test suites (dev-only).
//!
//! - [`fixtures_repository`]: a model repository of tiny ONNX models with hand-checkable answers
//!   (written by `fixtures/make_fixtures.py`, committed).
//! - [`shared_models`]: the real trained models of `../shared/models`, found through one setting
//!   (`QUIVER_SHARED_MODELS`); absent, tests skip loudly — unless `QUIVER_REQUIRE_SHARED_MODELS=1`
//!   (as CI sets it), when they fail.
//! - [`onnxruntime_library`]: ONNX Runtime's library, found the same way (`QUIVER_ONNXRUNTIME_LIB`,
//!   `QUIVER_REQUIRE_ONNXRUNTIME=1`).
//! - [`conformance`]: the suite every engine passes.
//! - [`ServerProcess`]: the real `quiver` binary started on `127.0.0.1:0`.
//! - [`wait_until`], [`wait_for`], [`poll_until`]: a bounded wait for a condition, instead of a
//!   fixed sleep that guesses how long the condition takes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub mod conformance;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")))
}

/// The repository of tiny fixture models: `half_plus_two`, `int_affine`, `multi_io`, `dense`.
pub fn fixtures_repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models")
}

/// The example repository that ships with the project (`examples/models`).
pub fn examples_repository() -> PathBuf {
    workspace_root().join("examples/models")
}

/// The shared real models (`QUIVER_SHARED_MODELS`, default `../shared/models` beside the
/// workspace). `None`, with a loud message, when absent; a panic when they are required.
pub fn shared_models() -> Option<PathBuf> {
    let dir = std::env::var_os("QUIVER_SHARED_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/models"));
    if dir.join("README.md").is_file() {
        return Some(dir);
    }
    let required = std::env::var("QUIVER_REQUIRE_SHARED_MODELS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "the shared models are required (QUIVER_REQUIRE_SHARED_MODELS=1) but {} has none; set QUIVER_SHARED_MODELS",
        dir.display()
    );
    eprintln!(
        "\n!!! SKIPPED: shared models not found at {} (set QUIVER_SHARED_MODELS); this test did not run !!!\n",
        dir.display()
    );
    None
}

/// ONNX Runtime's library for tests: `QUIVER_ONNXRUNTIME_LIB`, else what
/// `scripts/fetch-onnxruntime.sh` leaves under `target/onnxruntime`. `None`, with a loud message,
/// when absent; a panic when `QUIVER_REQUIRE_ONNXRUNTIME=1` (as CI sets it).
pub fn onnxruntime_library() -> Option<PathBuf> {
    let path = std::env::var_os("QUIVER_ONNXRUNTIME_LIB")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/onnxruntime/onnxruntime/capi"));
    let usable = path.is_file()
        || std::fs::read_dir(&path).is_ok_and(|mut entries| {
            entries.any(|e| {
                e.is_ok_and(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("libonnxruntime.so")
                })
            })
        });
    if usable {
        return Some(path);
    }
    let required = std::env::var("QUIVER_REQUIRE_ONNXRUNTIME").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "ONNX Runtime is required (QUIVER_REQUIRE_ONNXRUNTIME=1) but {} has no library; run scripts/fetch-onnxruntime.sh",
        path.display()
    );
    eprintln!(
        "\n!!! SKIPPED: ONNX Runtime's library not found at {} (run scripts/fetch-onnxruntime.sh or set QUIVER_ONNXRUNTIME_LIB); this test did not run !!!\n",
        path.display()
    );
    None
}

/// Polls `done` until it yields a value or `timeout` passes (`None` then). The first look is
/// immediate; the pause between looks grows from 1 ms to 50 ms, so a condition that holds soon
/// is seen soon and a slow one is not polled in a busy loop.
pub fn poll_until<T>(timeout: Duration, mut done: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(value) = done() {
            return Some(value);
        }
        if started.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The value `done` yields once it yields one; a panic naming `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, done: impl FnMut() -> Option<T>) -> T {
    poll_until(timeout, done)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Returns once `done` holds; a panic naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    wait_for(timeout, what, || done().then_some(()));
}

/// A model repository in a temporary directory, built by copying model files into it.
pub struct TempRepository {
    dir: tempfile::TempDir,
}

impl TempRepository {
    /// An empty repository.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            dir: tempfile::tempdir()?,
        })
    }

    /// The repository root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies `model_file` to `NAME/VERSION/model.onnx`.
    pub fn add(&self, name: &str, version: u64, model_file: &Path) -> anyhow::Result<&Self> {
        let dir = self.dir.path().join(name).join(version.to_string());
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(model_file, dir.join("model.onnx"))
            .with_context(|| format!("copying {}", model_file.display()))?;
        Ok(self)
    }

    /// Writes `contents` to `relative` inside the repository.
    pub fn write(&self, relative: &str, contents: &[u8]) -> anyhow::Result<&Self> {
        let path = self.dir.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, contents)?;
        Ok(self)
    }
}

/// The model file of fixture `name`, version 1.
pub fn fixture_model(name: &str) -> PathBuf {
    fixtures_repository().join(name).join("1/model.onnx")
}

/// The real `quiver` binary, started with `serve` on `127.0.0.1` with a free port. Killed on drop.
pub struct ServerProcess {
    child: Child,
    /// Where its REST API listens.
    pub rest_addr: SocketAddr,
    /// Where its gRPC services listen.
    pub grpc_addr: SocketAddr,
    log: Arc<Mutex<String>>,
    /// Its own data directory (the default metadata store lives there), unless the test gave
    /// one: servers of different tests never share state.
    _data_dir: Option<tempfile::TempDir>,
}

const REST_LINE: &str = "REST API listening on http://";
const GRPC_LINE: &str = "gRPC API listening on ";

impl ServerProcess {
    /// Starts `bin serve --host 127.0.0.1 --rest-port 0 --grpc-port 0 ARGS…` and waits until
    /// both listeners are up.
    pub fn start(bin: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(bin, args, &[])
    }

    /// Like [`ServerProcess::start`], with extra environment variables for the server.
    pub fn start_with_env(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let given = env.iter().any(|(k, _)| *k == "QUIVER_DATA_DIR")
            || args
                .iter()
                .any(|a| *a == "--data-dir" || *a == "--metadata-store");
        let data_dir = if given {
            None
        } else {
            Some(tempfile::tempdir()?)
        };
        let mut command = Command::new(bin);
        if let Some(dir) = &data_dir {
            command.env("QUIVER_DATA_DIR", dir.path());
        }
        let mut child = command
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--rest-port",
                "0",
                "--grpc-port",
                "0",
            ])
            .args(args)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                for (which, marker) in [(0, REST_LINE), (1, GRPC_LINE)] {
                    if let Some(pos) = line.find(marker) {
                        // Up to the end of the line, or of the JSON string with --log-format json.
                        let rest = &line[pos + marker.len()..];
                        let addr = rest.split('"').next().unwrap_or(rest).trim().to_owned();
                        let _ = ready_tx.send((which, addr));
                    }
                }
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let mut addrs: [Option<SocketAddr>; 2] = [None, None];
        while addrs.iter().any(Option::is_none) {
            let Ok((which, addr)) = ready_rx.recv_timeout(Duration::from_secs(120)) else {
                let _ = child.kill();
                bail!(
                    "the server did not start listening; its log:\n{}",
                    log.lock().map(|l| l.clone()).unwrap_or_default()
                );
            };
            let parsed = addr
                .parse()
                .with_context(|| format!("parsing address {addr:?}"))?;
            if let Some(slot) = addrs.get_mut(which) {
                *slot = Some(parsed);
            }
        }
        let [Some(rest_addr), Some(grpc_addr)] = addrs else {
            bail!("the server did not report both listening addresses");
        };
        Ok(Self {
            child,
            rest_addr,
            grpc_addr,
            log,
            _data_dir: data_dir,
        })
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.rest_addr)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    #[cfg(unix)]
    pub fn terminate(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        // An error from try_wait ends the wait as an exit would: it is returned at once.
        match poll_until(Duration::from_secs(30), || {
            self.child.try_wait().transpose()
        }) {
            Some(status) => Ok(status?),
            None => bail!("the server did not exit within 30 s of SIGTERM"),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
