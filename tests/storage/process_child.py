"""A storage user in a process of its own, driven by tests/storage/contract_processes.py.

    python -m tests.storage.process_child URL append NAME TASKS COUNT
    python -m tests.storage.process_child URL race NAME
    python -m tests.storage.process_child URL lead

It opens the storage, prints "ready", and waits for a line on stdin (so that every child starts
at once). `append` runs TASKS tasks, each appending COUNT one-event appends to stream NAME
one after another, and prints "ack REVISION DATA" as soon as each is acknowledged. `race`
appends once to stream "race" with base revision 0 and prints "won REVISION" or "conflict".
`lead` tries to take leadership, prints "leading" or "follower", and holds it until stdin
closes. Every mode prints "done" before it closes the storage.
"""

from __future__ import annotations

import asyncio
import sys

from storage import Conflict, NewEvent, Storage, open_storage


def say(line: str) -> None:
    # Unbuffered by hand: the parent must see an acknowledgement before a SIGKILL can land.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def append(storage: Storage, name: str, tasks: int, count: int) -> None:
    async def task(t: int) -> None:
        for i in range(count):
            data = f"{name}/{t}/{i}"
            revision = await storage.log.append(name, [NewEvent("Test", data.encode())])
            say(f"ack {revision} {data}")

    await asyncio.gather(*(task(t) for t in range(tasks)))


async def race(storage: Storage, name: str) -> None:
    try:
        revision = await storage.log.append(
            "race", [NewEvent("Test", name.encode())], base_revision=0
        )
    except Conflict:
        say("conflict")
    else:
        say(f"won {revision}")


async def lead(storage: Storage) -> None:
    say("leading" if await storage.leadership.acquire() else "follower")
    await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin


async def main(url: str, mode: str, args: list[str]) -> None:
    storage = await open_storage(url)
    try:
        say("ready")
        await asyncio.to_thread(sys.stdin.readline)
        if mode == "append":
            await append(storage, args[0], int(args[1]), int(args[2]))
        elif mode == "race":
            await race(storage, args[0])
        else:
            await lead(storage)
        say("done")
    finally:
        await storage.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
