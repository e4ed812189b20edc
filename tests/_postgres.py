"""A throwaway PostgreSQL server for the tests that share an Optuna study through an RDB storage.

``PostgresServer`` makes a fresh cluster (``initdb``) in a temporary folder, starts it listening on
127.0.0.1 only (at a free port, trust authentication for loopback and the cluster's own Unix socket
and nothing else), creates one database, and on ``stop()`` stops the server and removes the folder.

PostgreSQL refuses to run as root; when the tests run as root, the server programs run as the
``postgres`` system user (Debian's package creates it) through ``runuser``, in a folder owned by it.

``.ci/postgres.sh`` installs the server (Debian's ``postgresql`` package) and psycopg2. When
either is missing, the ``postgres_url`` fixture skips the test and says to run that script. Set
``SEGSEARCH_TEST_POSTGRES_URL`` to use a server of your own instead (its database should be empty
of other Optuna studies you care about).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DATABASE = "segsearch_test"
SUPERUSER = "postgres"
INSTALL_HINT = (
    "run `bash .ci/postgres.sh` (installs Debian's postgresql package and psycopg2-binary)"
)
ENV_URL = "SEGSEARCH_TEST_POSTGRES_URL"
WAIT_S = 30.0  # the longest we wait for the server to start, answer or stop

_SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres", "pg_isready")


class PostgresUnavailable(RuntimeError):
    """PostgreSQL or psycopg2 is not installed here, or cannot run as this user (the tests skip)."""


def _version_key(bin_dir: str) -> tuple[int, ...]:
    version = Path(bin_dir).parent.name  # /usr/lib/postgresql/<version>/bin
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` holding the server programs, or the PATH's, or
    None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for candidate in candidates:
        if all(os.access(os.path.join(candidate, p), os.X_OK) for p in _SERVER_PROGRAMS):
            return Path(candidate)
    return None


def check_prerequisites() -> tuple[Path, str | None]:
    """(bin dir, system user to run the server as or None), or raise PostgresUnavailable with the
    fix."""
    try:
        import psycopg2  # noqa: F401
    except ImportError as exc:
        raise PostgresUnavailable(f"psycopg2 is not installed ({exc}); {INSTALL_HINT}") from None
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable(
            "PostgreSQL server programs (initdb, pg_ctl, postgres) not found under "
            f"/usr/lib/postgresql/*/bin or on PATH; {INSTALL_HINT}"
        )
    run_as = None
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            raise PostgresUnavailable(
                f"running as root and there is no '{SUPERUSER}' system user to run PostgreSQL as "
                f"(PostgreSQL refuses to run as root); {INSTALL_HINT}"
            ) from None
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root and `runuser` (util-linux) is not installed")
        run_as = SUPERUSER
    return bin_dir, run_as


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One throwaway cluster: ``start()`` -> SQLAlchemy URL; ``stop()`` removes all trace of it."""

    def __init__(self, database: str = DATABASE) -> None:
        self.bin_dir, self.run_as = check_prerequisites()
        self.database = database
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.base: Path | None = None
        self._running = False

    # -- paths and commands -------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        assert self.base is not None
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        assert self.base is not None
        return self.base / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{SUPERUSER}@{self.host}:{self.port}/{self.database}"

    def _run(
        self, program: str, *args: str, timeout: float = WAIT_S + 15
    ) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / program), *args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        env = {**os.environ, "LC_ALL": "C", "PGTZ": "UTC"}
        # Output goes to a file, not a pipe: the server that pg_ctl forks must hold no pipe of ours.
        with tempfile.TemporaryFile() as out:
            proc = subprocess.run(
                command, cwd=self.base, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, timeout=timeout, check=False,
            )
            out.seek(0)
            proc.stdout = out.read().decode(errors="replace")
        return proc

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> str:
        self.base = Path(tempfile.mkdtemp(prefix="segsearch-pg-"))
        atexit.register(self.stop)
        try:
            if self.run_as:
                shutil.chown(self.base, user=self.run_as, group=None)
            self._initdb()
            self._start_server()
            self._create_database()
        except BaseException:
            self.stop()
            raise
        return self.url

    def _initdb(self) -> None:
        proc = self._run(
            "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
            "--locale=C", "--no-sync", "--no-instructions",
        )
        if proc.returncode != 0:
            raise RuntimeError(f"initdb failed (exit {proc.returncode}):\n{proc.stdout}")
        # Loopback TCP and the cluster's private socket only; no other host may connect at all.
        (self.data_dir / "pg_hba.conf").write_text(
            "# written by tests/_postgres.py: throwaway test cluster, loopback only\n"
            "local all all trust\n"
            "host  all all 127.0.0.1/32 trust\n"
        )
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# tests/_postgres.py\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.base}'\n"
                "max_connections = 40\n"
                "shared_buffers = 16MB\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "dynamic_shared_memory_type = mmap\n"
            )

    def _start_server(self, attempts: int = 3) -> None:
        message = ""
        for _ in range(attempts):
            self.port = free_port(self.host)
            proc = self._run(
                "pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_file),
                "-w", "-t", str(int(WAIT_S)), "-o", f"-p {self.port}",
            )
            if proc.returncode == 0:
                self._running = True
                self._wait_ready()
                return
            message = (
                f"pg_ctl start failed (exit {proc.returncode}):\n{proc.stdout}\n{self._log_tail()}"
            )
            if "already in use" not in message:  # another process took the port: try another one
                break
        raise RuntimeError(message)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while True:
            proc = self._run(
                "pg_isready", "-h", self.host, "-p", str(self.port), "-U", SUPERUSER, "-t", "5",
                timeout=15,
            )
            if proc.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL at {self.host}:{self.port} not ready after {WAIT_S:.0f} s:\n"
                    f"{proc.stdout}\n{self._log_tail()}"
                )
            time.sleep(0.25)

    def _create_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(
            host=self.host, port=self.port, user=SUPERUSER, dbname="postgres", connect_timeout=10
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop the server (fast, then immediate, then SIGKILL), remove its folder. Idempotent."""
        if self.base is None:
            return
        if self._running:
            for mode in ("fast", "immediate"):
                with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                    proc = self._run(
                        "pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "20"
                    )
                    if proc.returncode == 0:
                        break
            else:
                self._kill_postmaster()
            self._running = False
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    def _kill_postmaster(self) -> None:
        import signal

        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)


def postgres_url_fixture():
    """Body of the session fixture ``postgres_url`` (tests/conftest.py): yields the SQLAlchemy
    URL."""
    import pytest

    url = os.environ.get(ENV_URL)
    if url:
        yield url
        return
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        yield server.start()
    finally:
        server.stop()
