"""The storage contract across real processes sharing one storage (`--workers`, replicas).

test_<backend>.py subclasses ProcessContract with a `storage_url` fixture naming a fresh storage;
each test starts children (tests/storage/process_child.py) that open it by that URL, as the
service's workers do, while this process opens it too. Memory is one process's memory by
nature: its fixture skips.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from storage import NewEvent, Storage, StoredEvent, open_storage
from tests.storage.contract_helpers import read_all
from tests.storage.contract_leadership import eventually

_ROOT = Path(__file__).resolve().parents[2]
# Generous: children start a Python interpreter each, on a machine other tests share.
_LINE_TIMEOUT = 60.0


class Child:
    """One child process and the lines it prints."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr: Path) -> None:
        self.proc = proc
        self._stderr = stderr

    async def line(self) -> str:
        """The next line it printed; fails the test (with its stderr) if it ended instead."""
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), _LINE_TIMEOUT)
        if not raw:
            await self.proc.wait()
            pytest.fail(f"child ended ({self.proc.returncode}): {self._stderr.read_text()}")
        return raw.decode().rstrip("\n")

    async def rest(self) -> list[str]:
        """Every line still to come, until it exits (or was killed)."""
        assert self.proc.stdout is not None
        out = await asyncio.wait_for(self.proc.stdout.read(), _LINE_TIMEOUT)
        await self.proc.wait()
        return out.decode().splitlines()

    async def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        await self.proc.stdin.drain()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()


Spawn = Callable[..., Awaitable[Child]]
Open = Callable[[], Awaitable[Storage]]


def acks(lines: list[str]) -> dict[int, str]:
    """revision -> data of every "ack" line."""
    pairs = [line.split(" ", 2)[1:] for line in lines if line.startswith("ack ")]
    return {int(revision): data for revision, data in pairs}


async def run_to_done(child: Child) -> list[str]:
    lines = []
    while (line := await child.line()) != "done":
        lines.append(line)
    return lines


def assert_gap_free(events: list[StoredEvent], acked: dict[int, str]) -> None:
    """Revisions 1..n, each acknowledged append exactly once at its revision, in task order."""
    assert [e.revision for e in events] == list(range(1, len(events) + 1))
    by_revision = {e.revision: e.data.decode() for e in events}
    for revision, data in acked.items():
        assert by_revision[revision] == data
    assert len(set(by_revision.values())) == len(events)  # nothing written twice
    tasks: dict[str, list[int]] = {}
    for e in events:
        name, task, i = e.data.decode().split("/")
        tasks.setdefault(f"{name}/{task}", []).append(int(i))
    for order in tasks.values():
        assert order == sorted(order)


class ProcessContract:
    @pytest.fixture
    def storage_url(self) -> str:
        """Overridden: the URL of a fresh storage that other processes can open."""
        raise NotImplementedError

    @pytest.fixture
    async def spawn(self, storage_url: str, tmp_path: Path) -> AsyncIterator[Spawn]:
        children: list[Child] = []

        async def start(*args: object) -> Child:
            stderr = tmp_path / f"child-{len(children)}.err"
            with stderr.open("wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "tests.storage.process_child",
                    storage_url,
                    *map(str, args),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=err,
                    cwd=_ROOT,
                    env={**os.environ, "PYTHONPATH": str(_ROOT)},
                )
            children.append(Child(proc, stderr))
            assert await children[-1].line() == "ready"
            return children[-1]

        yield start
        for child in children:
            if child.proc.returncode is None:
                child.proc.kill()
            await child.proc.wait()

    @pytest.fixture
    async def open_here(self, storage_url: str) -> AsyncIterator[Open]:
        """Opens the storage in this process, as one more of its users."""
        opened: list[Storage] = []

        async def open_() -> Storage:
            opened.append(await open_storage(storage_url))
            return opened[-1]

        yield open_
        for storage in opened:
            await storage.aclose()

    @pytest.mark.anyio
    async def test_processes_append_concurrently_gap_free(
        self, spawn: Spawn, open_here: Open
    ) -> None:
        processes, tasks, count = 3, 2, 30
        children = [await spawn("append", f"p{k}", tasks, count) for k in range(processes)]
        log = (await open_here()).log
        total = processes * tasks * count

        async def tail() -> list[StoredEvent]:
            # Tails while the others commit: no revision may show up late, after a newer one.
            seen: list[StoredEvent] = []
            while len(seen) < total:
                batch = await log.read(len(seen), 50)
                for event in batch:
                    assert event.revision == len(seen) + 1, "gap or reordering seen by a reader"
                    seen.append(event)
                if not batch:
                    await log.wait_for(len(seen), timeout=5)
            return seen

        tailing = asyncio.create_task(tail())
        for child in children:
            await child.go()
        outputs = await asyncio.gather(*(run_to_done(child) for child in children))
        acked = acks([line for lines in outputs for line in lines])
        assert len(acked) == total  # every append acknowledged, no revision given twice
        seen = await asyncio.wait_for(tailing, _LINE_TIMEOUT)
        assert_gap_free(seen, acked)
        assert await read_all(log) == seen
        assert await log.head() == total

    @pytest.mark.anyio
    async def test_base_revision_conflict_across_processes(
        self, spawn: Spawn, open_here: Open
    ) -> None:
        children = [await spawn("race", f"r{k}") for k in range(4)]
        for child in children:
            await child.go()
        results = [await child.line() for child in children]
        won = [(k, r) for k, r in enumerate(results) if r.startswith("won ")]
        assert len(won) == 1, results
        assert results.count("conflict") == 3
        log = (await open_here()).log
        events = await log.read(0, 10, stream="race")
        assert [(e.revision, e.data) for e in events] == [(1, f"r{won[0][0]}".encode())]

    @pytest.mark.anyio
    async def test_a_tail_sees_another_process_commit_promptly(
        self, spawn: Spawn, open_here: Open
    ) -> None:
        child = await spawn("append", "w", 1, 1)
        log = (await open_here()).log
        loop = asyncio.get_running_loop()
        waiter = asyncio.create_task(log.wait_for(0, timeout=30))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        await child.go()
        assert (await child.line()).startswith("ack 1 ")
        acked_at = loop.time()
        assert await waiter
        # Well inside the timeout: the change signal (or at worst the polling) woke it.
        assert loop.time() - acked_at < 2

    @pytest.mark.anyio
    async def test_a_process_killed_mid_append_loses_no_acknowledged_append(
        self, spawn: Spawn, open_here: Open
    ) -> None:
        victim = await spawn("append", "victim", 4, 10**6)
        survivor = await spawn("append", "survivor", 2, 40)
        await victim.go()
        await survivor.go()
        lines = [await victim.line() for _ in range(40)]
        victim.proc.kill()  # SIGKILL, while its other appends are in flight
        lines += await victim.rest()
        assert victim.proc.returncode == -9
        lines += await run_to_done(survivor)
        acked = acks(lines)
        assert sum(1 for data in acked.values() if data.startswith("survivor/")) == 80
        log = (await open_here()).log
        events = await read_all(log)
        assert_gap_free(events, acked)
        # Whatever locks the victim held died with it.
        assert await log.append("after", []) == len(events)
        assert (
            await asyncio.wait_for(log.append("after", [NewEvent("Test", b"after/0/0")]), 10)
            == len(events) + 1
        )

    @pytest.mark.anyio
    async def test_leadership_moves_when_its_process_releases_or_dies(
        self, spawn: Spawn, open_here: Open
    ) -> None:
        mine = (await open_here()).leadership
        first = await spawn("lead")
        await first.go()
        assert await first.line() == "leading"
        assert not await mine.acquire()
        first.close_stdin()  # it releases and exits
        assert "done" in await first.rest()
        assert await eventually(mine.acquire)
        await mine.release()

        second = await spawn("lead")
        await second.go()
        assert await second.line() == "leading"
        assert not await mine.acquire()
        second.proc.kill()
        await second.proc.wait()
        assert await eventually(mine.acquire)
        assert await mine.holds()
