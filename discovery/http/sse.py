"""HTTP: the watch stream served raw, one coroutine and one disconnect task per watcher.

A watch holds its connection for up to an hour and a public endpoint holds tens of thousands.
Through FastAPI's route and StreamingResponse each one kept a request object, dependency
results, an anyio task group with two tasks and every middleware's frame: about 39 KiB of
service memory a watcher, where a bare ASGI stream on the same server costs 10 KiB. The
documented route (routes_watch.py) stays the schema, renders the frames and serves what this
path does not take whole (any query string other than `since=N`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from starlette.types import Receive, Send

from discovery.core.changes import WatchMessage
from discovery.core.clientip import IPAddress
from discovery.core.service import DiscoveryService
from discovery.http.deps import path_id
from discovery.http.routes_watch import HEARTBEAT_SECONDS, render, resume_point

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_RETRY = b"retry: 1000\n"


def since_of(query: bytes) -> tuple[bool, int | None]:
    """(taken, since) for a query string: taken only when empty or exactly `since=<digits>`."""
    if not query:
        return True, None
    digits = query[6:] if query.startswith(b"since=") else b""
    if digits.isdigit() and digits.isascii():
        return True, int(digits)
    return False, None


def last_event_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"last-event-id":
            return value.decode("latin-1")
    return None


async def open_watch(
    core: DiscoveryService,
    cluster: str,
    since: int | None,
    last_id: str | None,
    client_ip: IPAddress | None,
) -> tuple[AsyncGenerator[WatchMessage | None, None], WatchMessage | None]:
    """The stream and its first message; raises ServiceError (bad id, not ready, over a cap)
    before anything is sent, so it can still be an HTTP error."""
    stream = core.watch(
        path_id(cluster, "cluster ID"),
        since=resume_point(since, last_id),
        idle=HEARTBEAT_SECONDS,
        client_ip=client_ip,
    )
    return stream, await anext(stream)


async def stream_watch(
    stream: AsyncGenerator[WatchMessage | None, None],
    first: WatchMessage | None,
    receive: Receive,
    send: Send,
) -> None:
    """Send the stream until it ends or the client goes away."""
    task = asyncio.current_task()
    assert task is not None
    finished = False
    # uvicorn's send() drops writes to a closed connection silently, so only receive() tells
    # that the client left; it cancels this task, which waits in the stream.
    gone = asyncio.ensure_future(_until_disconnect(receive))

    def hang_up(_: object) -> None:
        if not finished:
            task.cancel()

    gone.add_done_callback(hang_up)
    try:
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await _body(send, _RETRY + render(first))
        async for message in stream:
            await _body(send, render(message))
        await send({"type": "http.response.body", "body": b""})
    except asyncio.CancelledError:
        # Our own hang-up is a normal end; a cancellation from elsewhere (shutdown) is not.
        if not gone.done() or task.cancelling() > 1:
            raise
        task.uncancel()
    finally:
        finished = True
        gone.cancel()
        await stream.aclose()


async def _body(send: Send, chunk: bytes) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
