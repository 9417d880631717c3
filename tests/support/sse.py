"""A small Server-Sent Events reader over an httpx streaming response."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class SSEEvent:
    id: int | None
    event: str
    data: Any


async def events(response: httpx.Response) -> AsyncIterator[SSEEvent]:
    """Parse frames as they arrive; comment lines (keep-alives) are skipped."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                raw_id = fields.get("id")
                yield SSEEvent(
                    int(raw_id) if raw_id else None,
                    fields.get("event", "message"),
                    json.loads(fields["data"]),
                )
            fields = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
