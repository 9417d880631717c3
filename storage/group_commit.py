"""The group-commit planner, pure: which queued appends share a transaction, and what each gets.

A backend that commits appends in groups (SQLite, PostgreSQL) keeps only its I/O: it takes a batch
off its queue with `take_batch`, asks its database which `conflict_checks` are stale under its
write lock, hands the answer and the current head to `plan_batch`, writes `Plan.rows`, commits,
and only then answers each caller with its entry of `Plan.outcomes`.

The plan gives the batch exactly the outcome that committing its appends one at a time, in queue
order, would give: gap-free revisions from head + 1 on, and a Conflict only for the append whose
own base revision is stale, never for its neighbours.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from storage.base import NewEvent
from storage.errors import Conflict

# Whatever the backend answers a caller through (an asyncio future); the planner only carries it.
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Append(Generic[R]):
    """One queued append and the handle its caller waits on."""

    stream: str
    events: tuple[NewEvent, ...]
    base_revision: int | None
    reply: R


@dataclass(frozen=True, slots=True)
class Row:
    """One event to insert, with the revision the plan gave it."""

    revision: int
    stream: str
    type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Plan(Generic[R]):
    """What one transaction writes and what each caller is told once it has committed.

    `outcomes` pairs every reply of the batch, in batch order, with the last revision of its
    append (the running head, for an append without events) or with its Conflict.
    """

    rows: tuple[Row, ...]
    head: int
    outcomes: tuple[tuple[R, int | Conflict], ...]


def take_batch(queue: deque[Any], limit: int, abandoned: Callable[[R], bool]) -> list[Append[R]]:
    """Pop the run of Appends at the front of `queue`, at most `limit` of them.

    Stops at the first item that is not an Append (a backend may queue other writes in between,
    which must keep their order). Appends whose reply is `abandoned` (the caller gave up before
    the batch began) are dropped: nobody waits for them, so they are not written.
    """
    batch: list[Append[R]] = []
    while queue and len(batch) < limit:
        item = queue[0]
        if not isinstance(item, Append):
            break
        queue.popleft()
        if not abandoned(item.reply):
            batch.append(item)
    return batch


def conflict_checks(batch: Sequence[Append[Any]]) -> list[tuple[str, int]]:
    """The distinct (stream, base revision) pairs to check against committed events, in order."""
    pairs = ((a.stream, a.base_revision) for a in batch if a.base_revision is not None)
    return list(dict.fromkeys(pairs))


def plan_batch(
    batch: Sequence[Append[R]], head: int, stale: Collection[tuple[str, int]]
) -> Plan[R]:
    """Assign revisions after `head` and find the conflicts of one batch.

    `stale` holds the pairs of `conflict_checks(batch)` for which the database has a committed
    event of the stream above the base revision; it must be read under the same write lock that
    the rows are inserted under, or a concurrent writer could slip in between.
    """
    revision = head
    newest: dict[str, int] = {}  # stream -> its newest revision planned in this batch
    rows: list[Row] = []
    outcomes: list[tuple[R, int | Conflict]] = []
    for append in batch:
        stream, base = append.stream, append.base_revision
        # An append must also see the appends planned before it in the same batch.
        if base is not None and ((stream, base) in stale or newest.get(stream, 0) > base):
            outcomes.append((append.reply, _conflict(stream, base)))
            continue
        for event in append.events:
            revision += 1
            rows.append(Row(revision, stream, event.type, event.data))
        if append.events:
            newest[stream] = revision
        outcomes.append((append.reply, revision))
    return Plan(tuple(rows), revision, tuple(outcomes))


def _conflict(stream: str, base: int) -> Conflict:
    return Conflict(f"stream {stream!r} changed after revision {base}")
