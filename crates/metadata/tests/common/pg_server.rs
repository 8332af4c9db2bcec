//! A real, throwaway PostgreSQL server for tests, from Debian's `postgresql` package: a new
//! cluster in a temporary directory, listening on 127.0.0.1 on a free port, trust
//! authentication for the superuser `quiver`; stopped (`-m immediate`) and removed on drop.
//!
//! PostgreSQL refuses to run as root, so as root its programs run as the package's `postgres`
//! user (`runuser`), in a directory chowned to it.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A running server; stopped on drop.
pub struct PgServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_root: bool,
    port: u16,
}

/// Where Debian installs PostgreSQL's programs (`/usr/lib/postgresql/VERSION/bin`), the newest
/// version first.
fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// A port nothing listens on now (bound, then released).
pub fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    probe.local_addr().expect("local addr").port()
}

fn check(what: &str, output: std::io::Result<Output>) {
    let output = output.unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PgServer {
    /// Starts a server; `None` (after a loud message) when PostgreSQL is not installed, unless
    /// `QUIVER_REQUIRE_POSTGRES=1` (as CI sets it), which makes that a failure.
    pub fn start() -> Option<Self> {
        let Some(bin) = find_bin() else {
            assert!(
                std::env::var("QUIVER_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "PostgreSQL is required (QUIVER_REQUIRE_POSTGRES=1) but /usr/lib/postgresql/*/bin/initdb is absent: apt-get install postgresql (scripts/test.sh does)"
            );
            eprintln!(
                "\n!!! SKIPPED: PostgreSQL (Debian package postgresql) not installed: no /usr/lib/postgresql/*/bin/initdb; this test did not run !!!\n"
            );
            return None;
        };
        let as_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let dir = tempfile::Builder::new()
            .prefix("quiver-pg-")
            .tempdir()
            .expect("tempdir");
        let mut server = Self {
            bin,
            dir,
            as_root,
            port: 0,
        };
        if as_root {
            check(
                "chown the data directory to postgres",
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(server.dir.path())
                    .output(),
            );
        }
        let data = server.data();
        check(
            "initdb",
            server
                .as_postgres("initdb")
                .arg("-D")
                .arg(&data)
                .args([
                    "--auth=trust",
                    "-U",
                    "quiver",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ])
                .output(),
        );
        // Another process may take the free port between probe and bind: try a few.
        for attempt in 1..=3 {
            server.port = free_port();
            let output = server
                .as_postgres("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(server.dir.path().join("server.log"))
                .args(["-w", "-t", "60", "-o"])
                .arg(format!(
                    "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} -c fsync=off -c full_page_writes=off",
                    server.port,
                    server.dir.path().display()
                ))
                .arg("start")
                .output()
                .expect("run pg_ctl");
            if output.status.success() {
                break;
            }
            let log =
                std::fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default();
            assert!(
                attempt < 3,
                "pg_ctl start failed:\n{}{}\n{log}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Some(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// One of PostgreSQL's programs, run as `postgres` when we are root.
    fn as_postgres(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        // The postgres user may not be able to enter our working directory.
        command.current_dir(self.dir.path());
        command
    }

    /// Creates a database; returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        check(
            "createdb",
            Command::new(self.bin.join("createdb"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "quiver",
                    name,
                ])
                .output(),
        );
        self.url(name)
    }

    /// The URL of one of its databases.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://quiver@127.0.0.1:{}/{database}", self.port)
    }

    /// Restarts the server (same port and data): every connection to it breaks.
    pub fn restart(&self) {
        check(
            "pg_ctl restart",
            self.as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.data())
                // A log file, or the server would hold our output pipe open forever.
                .arg("-l")
                .arg(self.dir.path().join("server.log"))
                .args(["-w", "-t", "60", "-m", "fast", "restart"])
                .output(),
        );
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let stopped = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "immediate", "stop"])
            .output();
        match stopped {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(e) => eprintln!("cannot run pg_ctl stop: {e}"),
        }
    }
}
