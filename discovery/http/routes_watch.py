"""HTTP: the watch stream as Server-Sent Events, resumable by revision."""

from __future__ import annotations

import json
import weakref
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from discovery.core.changes import Change, WatchMessage, WatchSnapshot
from discovery.core.errors import InvalidArgument
from discovery.http.deps import AdmittedCoreDep, client_ip_of, path_id
from discovery.http.schemas import AffiliateOut

router = APIRouter(prefix="/v1/clusters", tags=["watch"])

HEARTBEAT_SECONDS = 15.0
_KEEPALIVE = b": keepalive\n\n"

# Each change's frame, rendered once and shared by every watcher of the cluster; an entry
# goes when the last watcher queue lets go of its change.
_frames: weakref.WeakKeyDictionary[Change, bytes] = weakref.WeakKeyDictionary()


def _frame(revision: int, kind: str, payload: object) -> bytes:
    data = json.dumps(payload, separators=(",", ":"))
    return f"id: {revision}\nevent: {kind}\ndata: {data}\n\n".encode()


def render(message: WatchMessage | None) -> bytes:
    """One SSE frame; a change is encoded once and shared by every watcher."""
    if message is None:
        return _KEEPALIVE
    if isinstance(message, WatchSnapshot):
        affiliates = [AffiliateOut.of(a).model_dump() for a in message.affiliates]
        return _frame(
            message.revision, "snapshot", {"revision": message.revision, "affiliates": affiliates}
        )
    cached = _frames.get(message)
    if cached is None:
        cached = _frames[message] = _render_change(message)
    return cached


def _render_change(change: Change) -> bytes:
    if change.affiliate is None:
        return _frame(change.revision, "delete", {"id": change.affiliate_id})
    return _frame(change.revision, "update", AffiliateOut.of(change.affiliate).model_dump())


def resume_point(since: int | None, last_event_id: str | None) -> int | None:
    if since is not None:
        return since
    if last_event_id is None or last_event_id == "":
        return None
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
    if not (last_event_id.isascii() and last_event_id.isdigit()):
        raise InvalidArgument("Last-Event-ID must be a revision number")
    return int(last_event_id)


@router.get("/{cluster}/watch", response_class=StreamingResponse)
async def watch(
    cluster: str,
    request: Request,
    core: AdmittedCoreDep,
    since: Annotated[int | None, Query(ge=0, description="resume after this revision")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """`snapshot`, then `update` / `delete` events; `id:` is the revision to resume from."""
    stream = core.watch(
        path_id(cluster, "cluster ID"),
        since=resume_point(since, last_event_id),
        idle=HEARTBEAT_SECONDS,
        client_ip=client_ip_of(request),
    )
    # Pull the first message now, so a bad cluster id or an unready service is an HTTP error
    # rather than a stream that ends at once.
    first = await anext(stream)

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 1000\n" + render(first)
            async for message in stream:
                yield render(message)
        finally:
            await stream.aclose()

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
