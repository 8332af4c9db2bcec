"""A real, throwaway PostgreSQL for the end-to-end tests (the metadata store's shared backend),
from Debian's postgresql package: `with postgres_server() as url:` gives
a `PostgresServer` whose `url` is `postgres://quiver@127.0.0.1:PORT/quiver` (and which can be
stopped and started again on the same port, to lose the store mid-test), a new cluster in a temporary directory, listening on
127.0.0.1 on a free port, trust authentication for the superuser `quiver`; stopped
(`pg_ctl stop -m immediate`) and removed afterwards.

PostgreSQL refuses to run as root, so as root its programs run as the package's `postgres` user
(`runuser`), in a directory chowned to it. Without the package the test skips loudly, unless
QUIVER_REQUIRE_POSTGRES=1 (as CI sets it), which makes that a failure. The same harness in Rust:
crates/metadata/tests/common/pg_server.rs.
"""
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest


def postgres_bin():
    """The newest /usr/lib/postgresql/VERSION/bin with initdb, or None."""
    found = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        version = initdb.split("/")[4]
        if version.isdigit():
            found.append((int(version), os.path.dirname(initdb)))
    return max(found)[1] if found else None


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(command, what, cwd=None):
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                            cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


class PostgresServer:
    """A running test cluster: `url`, and `stop()` / `start()` (same port, same data)."""

    def __init__(self, url, start, stop):
        self.url = url
        self.start = start
        self.stop = stop


@contextlib.contextmanager
def postgres_server():
    """Yields a `PostgresServer` for a new PostgreSQL database `quiver` (user `quiver`, no
    password)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        message = ("PostgreSQL (Debian package postgresql) not installed: no "
                   "/usr/lib/postgresql/*/bin/initdb (apt-get install postgresql; scripts/test.sh does)")
        if os.environ.get("QUIVER_REQUIRE_POSTGRES") == "1":
            pytest.fail(message + "; it is required (QUIVER_REQUIRE_POSTGRES=1)")
        print(f"\n!!! SKIPPED: {message} !!!\n", file=sys.stderr)
        pytest.skip(message)

    as_root = os.geteuid() == 0
    # ignore_cleanup_errors: the files are the postgres user's, and a server killed mid-write may
    # leave some behind that a non-root run cannot remove.
    with tempfile.TemporaryDirectory(prefix="quiver-pg-", ignore_cleanup_errors=True) as tmp:
        data = os.path.join(tmp, "data")
        log = os.path.join(tmp, "server.log")

        def as_postgres(program, *args):
            command = [os.path.join(bin_dir, program), *args]
            return ["runuser", "-u", "postgres", "--", *command] if as_root else command

        if as_root:
            shutil.chown(tmp, "postgres", "postgres")
        started = False
        try:
            # cwd=tmp: the postgres user may not be able to enter our working directory.
            _run(as_postgres("initdb", "-D", data, "--auth=trust", "-U", "quiver",
                             "--encoding=UTF8", "--locale=C", "--no-sync"), "initdb", cwd=tmp)
            # Another process may take the free port between probe and bind: try a few.
            for attempt in range(3):
                port = _free_port()
                options = (f"-c listen_addresses=127.0.0.1 -p {port} "
                           f"-c unix_socket_directories={tmp} -c fsync=off -c full_page_writes=off")
                # -l: without a log file the server would hold our output pipes open.
                result = subprocess.run(as_postgres("pg_ctl", "-D", data, "-l", log, "-w", "-t", "60",
                                                    "-o", options, "start"),
                                        capture_output=True, text=True, timeout=120, check=False,
                                        cwd=tmp)
                if result.returncode == 0:
                    started = True
                    break
                if attempt == 2:
                    with open(log, encoding="utf-8", errors="replace") as server_log:
                        raise RuntimeError(f"pg_ctl start failed:\n{result.stdout}{result.stderr}\n"
                                           + server_log.read())
            _run([os.path.join(bin_dir, "createdb"), "-h", "127.0.0.1", "-p", str(port),
                  "-U", "quiver", "quiver"], "createdb")
            def stop():
                _run(as_postgres("pg_ctl", "-D", data, "-w", "-m", "immediate", "stop"),
                     "pg_ctl stop", cwd=tmp)

            def start():
                _run(as_postgres("pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o", options,
                                 "start"), "pg_ctl start", cwd=tmp)

            yield PostgresServer(f"postgres://quiver@127.0.0.1:{port}/quiver", start, stop)
        finally:
            if started:
                subprocess.run(as_postgres("pg_ctl", "-D", data, "-w", "-m", "immediate", "stop"),
                               capture_output=True, timeout=60, check=False, cwd=tmp)
