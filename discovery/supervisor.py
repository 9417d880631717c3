"""The supervisor of `--workers N`: binds the ports once, keeps N worker processes serving on
them, replaces a worker that dies, and drains them all on SIGTERM or SIGINT.

    status = supervise(settings, argv)    # raises StartupError with one clear line

Each worker is `python -m discovery` with the same flags and environment plus a handoff
(`discovery.handoff`): the inherited HTTP and metrics sockets, so the kernel queues
connections while a worker restarts; gRPC is bound by every worker with SO_REUSEPORT beside a
socket the supervisor holds. Every worker folds the one shared event log, so any of them can
answer any request; which one does is the kernel's choice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence

from prometheus_client.multiprocess import mark_process_dead

from discovery.handoff import ENV, ERROR, READY, Handoff
from discovery.settings import Settings
from discovery.startup import StartupError, bind, check_tls_pair, hold

log = logging.getLogger("discovery.supervisor")

_RESTART_DELAY = 0.5
_RESTART_DELAY_MAX = 30.0
# A worker that served this long before dying is restarted after the first delay again.
_STABLE_SECONDS = 60.0
# A worker drains in well under this (HTTP 5 s, gRPC 2 s, a final snapshot within 10 s).
_DRAIN_SECONDS = 30.0


def supervise(settings: Settings, argv: Sequence[str]) -> int:
    """Serve with `settings.workers` processes until SIGTERM/SIGINT; the exit status.

    Raises StartupError for a port, a certificate or a worker that cannot start."""
    check_tls_pair(settings.tls_cert, settings.tls_key)
    sockets: list[socket.socket] = []
    metrics_dir = tempfile.mkdtemp(prefix="discovery-metrics-")
    try:
        http = bind(settings.http_addr, "HTTP")
        sockets.append(http)
        metrics = bind(settings.metrics_addr, "metrics") if settings.metrics_addr else None
        if metrics is not None:
            sockets.append(metrics)
        if settings.grpc_addr:
            sockets.append(hold(settings.grpc_addr, "gRPC"))
        supervisor = Supervisor(settings.workers, argv, http, metrics, metrics_dir)
        return asyncio.run(supervisor.run(sockets))
    finally:
        for sock in sockets:
            sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


class Supervisor:
    def __init__(
        self,
        count: int,
        argv: Sequence[str],
        http: socket.socket,
        metrics: socket.socket | None,
        metrics_dir: str,
    ) -> None:
        self._count = count
        self._argv = list(argv)
        self._http = http
        self._metrics = metrics
        self._metrics_dir = metrics_dir
        self._workers: dict[int, asyncio.subprocess.Process] = {}
        self._ready: set[int] = set()
        self._stopping = asyncio.Event()
        self._failure: str | None = None

    async def run(self, sockets: Sequence[socket.socket]) -> int:
        """Keep the workers running until a signal, then drain them; the exit status."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        log.info("starting workers", extra={"workers": self._count, "pid": os.getpid()})
        slots = [
            asyncio.create_task(self._keep(index), name=f"worker-{index}")
            for index in range(1, self._count + 1)
        ]
        await self._stopping.wait()
        for process in self._workers.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        # Ours are the last copies once the workers have closed theirs: closing them now frees
        # the ports as soon as the drain ends, and queues no new connection meanwhile.
        for sock in sockets:
            sock.close()
        _, late = await asyncio.wait(slots, timeout=_DRAIN_SECONDS)
        for process in self._workers.values():
            log.warning("worker did not drain in time, killing it", extra={"pid": process.pid})
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await asyncio.gather(*late, return_exceptions=True)
        if self._failure is not None:
            raise StartupError(self._failure)
        log.info("workers stopped")
        return 0

    async def _keep(self, index: int) -> None:
        """Run worker `index`, and again each time it dies, until the supervisor stops."""
        delay = _RESTART_DELAY
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                process, status, pipe = await self._spawn(index)
            except OSError as exc:
                self._fail(f"cannot start a worker: {exc}")
                return
            if self._stopping.is_set():
                # The drain began while it was being started: it missed the SIGTERM.
                process.send_signal(signal.SIGTERM)
            try:
                line = (await status.readline()).decode(errors="replace").rstrip("\n")
                if line == READY:
                    self._on_ready(index, process.pid)
                elif line.startswith(ERROR):
                    # It cannot start as configured: restarting would fail the same way.
                    self._fail(line[len(ERROR) :])
                code = await process.wait()
            finally:
                pipe.close()
                self._workers.pop(index, None)
                self._ready.discard(index)
            # Its "live" gauges (watchers, leadership) no longer count; counters stay summed.
            mark_process_dead(process.pid, self._metrics_dir)  # type: ignore[no-untyped-call]
            if self._stopping.is_set():
                return
            if time.monotonic() - started > _STABLE_SECONDS:
                delay = _RESTART_DELAY
            log.warning(
                "worker exited, restarting it",
                extra={"worker": index, "pid": process.pid, "status": code, "restart_in": delay},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, _RESTART_DELAY_MAX)

    async def _spawn(
        self, index: int
    ) -> tuple[asyncio.subprocess.Process, asyncio.StreamReader, asyncio.ReadTransport]:
        """Start worker `index`; returns it and the read end of its status pipe."""
        read_fd, write_fd = os.pipe()
        handoff = Handoff(
            index=index,
            supervisor=os.getpid(),
            http_fd=self._http.fileno(),
            metrics_fd=self._metrics.fileno() if self._metrics is not None else None,
            status_fd=write_fd,
            metrics_dir=self._metrics_dir,
        )
        # prometheus-client picks its multiprocess storage when first imported: the variable
        # must be in the worker's environment from the start.
        env = {**os.environ, ENV: handoff.to_env(), "PROMETHEUS_MULTIPROC_DIR": self._metrics_dir}
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "discovery",
                *self._argv,
                pass_fds=handoff.fds(),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            # The worker holds the only write end now: its exit is our end of file.
            os.close(write_fd)
        self._workers[index] = process
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        pipe, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        return process, reader, pipe

    def _on_ready(self, index: int, pid: int) -> None:
        self._ready.add(index)
        log.info("worker ready", extra={"worker": index, "pid": pid})
        if len(self._ready) == self._count:
            log.info("workers ready", extra={"workers": self._count})

    def _fail(self, message: str) -> None:
        if self._failure is None:
            self._failure = message
        self._stopping.set()
