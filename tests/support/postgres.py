"""A pytest plugin giving tests a PostgreSQL server: an external one, or a throwaway cluster.

Fixtures:
    postgres_url     (session)  URL of the server: $DISCOVERY_TEST_POSTGRES_URL or a throwaway one
    postgres_db      (function) URL of a fresh, empty database on that server, dropped afterwards
    postgres_server  (function) a dedicated throwaway PostgresServer the test may stop and start

Missing server binaries skip the tests, except under CI=true, where they fail: CI must run them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

URL_ENV = "DISCOVERY_TEST_POSTGRES_URL"
_PREFIX = "discovery-pg-"
_T = TypeVar("_T")

# The throwaway server of this session, for stop_server()/start_server(); None when the
# session uses an external server (or has not started one yet).
_session_server: PostgresServer | None = None


def _skip_or_fail(reason: str) -> NoReturn:
    # A skipped PostgreSQL suite in CI would hide a broken backend behind a green build.
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the PostgreSQL tests must run)")
    pytest.skip(reason)


def find_bin_dir() -> Path | None:
    """The directory holding initdb and pg_ctl: PATH first, then the newest Debian layout."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for bin_dir in candidates:
        if (bin_dir / "initdb").is_file() and (bin_dir / "pg_ctl").is_file():
            return bin_dir
    return None


def _free_port() -> int:
    # Racy (someone may take it before the server binds), but good enough for a test machine.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_async(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    # Sync fixtures may run while a test's event loop exists on this thread; a private loop in a
    # private thread never interferes with it.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def database_url(url: str, database: str) -> str:
    """`url` with its database replaced by `database`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=30)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class PostgresServer:
    """A throwaway PostgreSQL cluster in a temp dir, listening on 127.0.0.1 only.

    `create()` runs initdb (trust auth, fsync on); `start()`/`stop()` may be repeated, and reuse
    the port and data dir, so a test can restart the server under a client; `destroy()` stops it
    and deletes the dir. As root, every server process runs as the `postgres` user (or `nobody`),
    since postgres refuses to run as root.
    """

    def __init__(self, bin_dir: Path, root: Path, port: int, user: str | None) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.port = port
        self.user = user
        self.running = False

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        """URL of the `postgres` database, as the superuser `postgres`."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @classmethod
    def create(cls) -> PostgresServer:
        """Initialise a new cluster (not started). Skips (fails under CI) without binaries."""
        bin_dir = find_bin_dir()
        if bin_dir is None:
            _skip_or_fail("PostgreSQL server binaries (initdb, pg_ctl) not found")
        user: str | None = None
        if os.geteuid() == 0:
            user = "postgres" if _user_exists("postgres") else "nobody"
        _reap_orphans(bin_dir, user)
        root = Path(tempfile.mkdtemp(prefix=_PREFIX))
        server = cls(bin_dir, root, _free_port(), user)
        try:
            (root / "owner").write_text(str(os.getpid()))
            server._initdb()
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return server

    def _as_user(self, argv: list[str]) -> list[str]:
        if self.user is None:
            return argv
        if shutil.which("runuser"):
            return ["runuser", "-u", self.user, "--", *argv]
        entry = pwd.getpwnam(self.user)
        return [
            "setpriv",
            f"--reuid={entry.pw_uid}",
            f"--regid={entry.pw_gid}",
            "--clear-groups",
            "--",
            *argv,
        ]

    def _run(self, *argv: str) -> None:
        # cwd inside our dir: the server user may not be allowed into the caller's cwd.
        result = subprocess.run(
            self._as_user([str(self.bin_dir / argv[0]), *argv[1:]]),
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()}\n{tail}"
            )

    def _initdb(self) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
        )
        # Settings go into the conf file, not the command line, so every restart gets them.
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            # Durability is under test: a commit must survive an immediate (crash) stop.
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            # Several event-log instances (each a pool plus LISTEN and leader connections) per
            # test, some left over from tests the server has not reaped yet.
            "max_connections": "300",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# discovery tests\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        """Start the server and wait until it accepts connections. Idempotent."""
        if self.running:
            return
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", log, "-w", "-t", "60", "start")
        self.running = True

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server; `immediate` is a crash as far as clients can tell. Idempotent."""
        if not self.running:
            return
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def destroy(self) -> None:
        """Stop the server and delete its files."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, just someone else's
        pass
    return True


def _reap_orphans(bin_dir: Path, user: str | None) -> None:
    # A session killed before its teardown (SIGKILL, a CI timeout) leaves its server running and
    # its dir behind; the owner file names the process the server belonged to.
    for root in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        try:
            owner = int((root / "owner").read_text())
        except (OSError, ValueError):
            continue  # not ours, or still being created
        if _pid_alive(owner):
            continue
        orphan = PostgresServer(bin_dir, root, 0, user)
        orphan.running = (root / "data" / "postmaster.pid").exists()
        with contextlib.suppress(RuntimeError):
            orphan.stop()
        shutil.rmtree(root, ignore_errors=True)


def session_server() -> PostgresServer:
    """The session's throwaway server; fails the test when the session uses an external one."""
    if _session_server is None:
        pytest.fail(f"no throwaway PostgreSQL server in this session (is {URL_ENV} set?)")
    return _session_server


def stop_server(mode: str = "immediate") -> None:
    """Stop the session's throwaway server (keeping its data); see start_server()."""
    session_server().stop(mode)


def start_server() -> None:
    """Start the session's throwaway server again, on the same port with the same data."""
    session_server().start()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL server for this session: the external one if configured."""
    global _session_server
    external = os.environ.get(URL_ENV)
    if external:
        yield external
        return
    server = PostgresServer.create()
    try:
        server.start()
        _session_server = server
        yield server.url
    finally:
        _session_server = None
        server.destroy()


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[str]:
    """URL of a new empty database, dropped (with any leftover connections) after the test."""
    name = f"test_{uuid.uuid4().hex}"
    _run_async(lambda: _execute(postgres_url, f'CREATE DATABASE "{name}"'))
    try:
        yield database_url(postgres_url, name)
    finally:
        # FORCE (PostgreSQL 13+) so a connection the test leaked cannot keep the database alive.
        _run_async(lambda: _execute(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    """A dedicated, started throwaway server the test may stop and start; destroyed after."""
    server = PostgresServer.create()
    try:
        server.start()
        yield server
    finally:
        server.destroy()
