"""The seam between the agent and the system: the only code that runs `wg`, `ip`, `nft`.

Everything above it builds argv lists; tests swap in tests/fakes.py's FakeRunner. Secrets
never appear in argv (visible to every user in /proc/<pid>/cmdline): they travel through
stdin or through 0600 files in the state dir.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Protocol

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
_NOT_FOUND = 127  # what a shell reports for a missing command


class WgError(Exception):
    """A command failed: `command` is argv[0:2] (e.g. ["ip", "link"]), `rc` its exit code."""

    def __init__(self, command: Sequence[str], rc: int, stderr: str) -> None:
        self.command = tuple(command)
        self.rc = rc
        self.stderr = stderr.strip()
        super().__init__(f"{' '.join(self.command)}: exit {rc}: {self.stderr or '(no output)'}")


class Runner(Protocol):
    async def run(self, argv: Sequence[str], *, stdin: bytes | None = None) -> bytes:
        """stdout of `argv`; raises WgError on a non-zero exit, a timeout or a missing binary."""
        ...


class SubprocessRunner:
    """Runs commands with asyncio subprocesses, binaries resolved to absolute paths once."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
        path: str | None = None,
    ) -> None:
        self._timeout = timeout
        if env is None:
            # wireguard-go, when LOG_LEVEL is set, hands our stdout pipe to its daemon, and
            # communicate() would then wait for that daemon to exit.
            env = {k: v for k, v in os.environ.items() if k != "LOG_LEVEL"}
        self._env = dict(env)
        self._path = path
        self._binaries: dict[str, str] = {}

    def resolve(self, name: str) -> str:
        """The absolute path of `name` (cached); raises WgError(rc=127) if it is not installed."""
        if os.path.isabs(name):
            return name
        found = self._binaries.get(name)
        if found is None:
            # Resolved once: a PATH lookup per call would let a later PATH change (or a file
            # dropped in a writable PATH entry) swap the binary under a root process.
            found = shutil.which(name, path=self._path)
            if found is None:
                raise WgError([name], _NOT_FOUND, f"{name}: command not found")
            self._binaries[name] = found = os.path.abspath(found)
        return found

    async def run(self, argv: Sequence[str], *, stdin: bytes | None = None) -> bytes:
        if not argv:
            raise ValueError("empty argv")
        command = list(argv[0:2])
        exe = [self.resolve(argv[0]), *argv[1:]]
        log.debug("run %s", " ".join(argv))
        try:
            proc = await asyncio.create_subprocess_exec(
                *exe,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env,
            )
        except OSError as exc:
            raise WgError(command, _NOT_FOUND, str(exc)) from None
        try:
            # asyncio.timeout, not wait_for: see kubespan.session.wait_event.
            async with asyncio.timeout(self._timeout):
                out, err = await proc.communicate(stdin)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise WgError(command, -1, f"timed out after {self._timeout:g}s") from None
        except asyncio.CancelledError:
            # Never leave an orphan behind a cancelled reconcile pass.
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0:
            raise WgError(command, proc.returncode or 0, err.decode(errors="replace"))
        return out
