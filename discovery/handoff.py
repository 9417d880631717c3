"""What the supervisor hands a worker process, and what the worker reports back.

The supervisor binds the listening sockets once and re-executes `python -m discovery` for each
worker, with the sockets' descriptors inherited (`pass_fds`) and named in one environment
variable, `_DISCOVERY_WORKER` (JSON, not a flag: the worker reads the same flags and
`DISCOVERY_*` environment as the supervisor, and this is no setting a user should set). The
worker answers on a pipe: `ready`, or `error <message>` when it cannot start (a StartupError),
so that the supervisor, not every worker, prints that one line.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ENV = "_DISCOVERY_WORKER"
# Which worker answered: lets a client or a test tell the workers apart.
WORKER_HEADER = b"x-discovery-worker"
READY = "ready"
ERROR = "error "

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True, slots=True, kw_only=True)
class Handoff:
    index: int
    supervisor: int
    http_fd: int
    metrics_fd: int | None
    status_fd: int
    metrics_dir: str

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Handoff | None:
        """The handoff of this process, or None when it is no worker (a plain service)."""
        raw = environ.get(ENV)
        return cls(**json.loads(raw)) if raw else None

    def fds(self) -> tuple[int, ...]:
        """The descriptors the worker must inherit."""
        listening = (self.http_fd,) if self.metrics_fd is None else (self.http_fd, self.metrics_fd)
        return (*listening, self.status_fd)

    def sockets(self) -> dict[str, socket.socket]:
        """The inherited listening sockets, by listener ("http", "metrics")."""
        found = {"http": socket.socket(fileno=self.http_fd)}
        if self.metrics_fd is not None:
            found["metrics"] = socket.socket(fileno=self.metrics_fd)
        return found

    def report(self, line: str) -> None:
        """Tell the supervisor `ready` or `error ...`; a gone supervisor is no error here."""
        with contextlib.suppress(OSError):
            os.write(self.status_fd, (line.replace("\n", " ") + "\n").encode())


def die_with_supervisor(handoff: Handoff) -> None:
    """Have the kernel SIGKILL this worker when the supervisor dies, however it dies.

    Without it a SIGKILLed supervisor leaves workers serving on the inherited sockets, with
    nobody to stop them, and a new supervisor cannot bind the port. SIGKILL, not SIGTERM:
    every acknowledged write is already durable, so a drain would only keep the port busy.
    """
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    # The supervisor may have died before the prctl: then nothing would ever signal us.
    if os.getppid() != handoff.supervisor:
        os._exit(1)


def tag_responses(app: ASGIApp, index: int) -> ASGIApp:
    """`app` with a header naming this worker on every HTTP response."""
    header = (WORKER_HEADER, str(index).encode())

    async def tagged(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        await app(scope, receive, send_tagged)

    return tagged
