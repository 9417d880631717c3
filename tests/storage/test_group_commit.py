"""The group-commit planner: plain cases, and properties against committing one by one."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Sequence

from hypothesis import given
from hypothesis import strategies as st

from storage.base import NewEvent
from storage.errors import Conflict
from storage.group_commit import Append, Row, conflict_checks, plan_batch, take_batch


def ev(data: str) -> NewEvent:
    return NewEvent("Happened", data.encode())


def req(reply: int, stream: str, *data: str, base: int | None = None) -> Append[int]:
    return Append(stream, tuple(ev(d) for d in data), base, reply)


def among(gone: Collection[int]) -> Callable[[int], bool]:
    """An `abandoned` test for take_batch: the replies in `gone` gave up."""
    return lambda reply: reply in gone


def outcomes(plan_outcomes: Sequence[tuple[int, int | Conflict]]) -> list[int | str]:
    """Replies' outcomes with each Conflict as the string "conflict", for comparing."""
    return ["conflict" if isinstance(o, Conflict) else o for _, o in plan_outcomes]


# -- plain cases --------------------------------------------------------------------------------


def test_revisions_follow_the_head_in_batch_order() -> None:
    plan = plan_batch([req(1, "a", "x", "y"), req(2, "b", "z")], head=10, stale=set())
    assert plan.rows == (
        Row(11, "a", "Happened", b"x"),
        Row(12, "a", "Happened", b"y"),
        Row(13, "b", "Happened", b"z"),
    )
    assert plan.head == 13
    assert plan.outcomes == ((1, 12), (2, 13))


def test_a_stale_base_conflicts_alone() -> None:
    batch = [req(1, "a", "1"), req(2, "b", "2", base=4), req(3, "c", "3", base=4)]
    plan = plan_batch(batch, head=5, stale={("b", 4)})
    assert outcomes(plan.outcomes) == [6, "conflict", 7]
    assert [r.revision for r in plan.rows] == [6, 7]
    assert [r.stream for r in plan.rows] == ["a", "c"]
    [(reply, conflict)] = [o for o in plan.outcomes if isinstance(o[1], Conflict)]
    assert reply == 2
    assert "'b'" in str(conflict) and "4" in str(conflict)


def test_an_append_sees_the_appends_before_it_in_its_batch() -> None:
    batch = [
        req(1, "a", "first", base=0),
        req(2, "a", "second", base=0),  # "a" moved past 0 in this very batch
        req(3, "a", "third", base=1),  # 1 is the newest revision of "a": fine
        req(4, "b", "other", base=0),  # another stream is not affected
    ]
    plan = plan_batch(batch, head=0, stale=set())
    assert outcomes(plan.outcomes) == [1, "conflict", 2, 3]


def test_an_append_without_events_writes_nothing_and_reports_the_running_head() -> None:
    batch = [req(1, "a", "x"), req(2, "a", base=1), req(3, "a", base=0), req(4, "b", "y")]
    plan = plan_batch(batch, head=0, stale=set())
    assert outcomes(plan.outcomes) == [1, 1, "conflict", 2]
    assert plan.head == 2


def test_an_all_conflicting_batch_keeps_the_head() -> None:
    plan = plan_batch([req(1, "a", "x", base=0)], head=3, stale={("a", 0)})
    assert (plan.rows, plan.head, outcomes(plan.outcomes)) == ((), 3, ["conflict"])


def test_conflict_checks_are_distinct_and_skip_appends_without_a_base() -> None:
    batch = [
        req(1, "a", "x", base=3),
        req(2, "b", "x"),
        req(3, "a", "y", base=3),
        req(4, "a", "z", base=5),
        req(5, "b", "x", base=0),
    ]
    assert conflict_checks(batch) == [("a", 3), ("a", 5), ("b", 0)]
    assert conflict_checks([req(1, "a", "x")]) == []


def test_take_batch_stops_at_other_writes_and_drops_abandoned_appends() -> None:
    job = object()
    queue: deque[object] = deque([req(1, "a", "x"), req(2, "a", "y"), job, req(3, "a", "z")])
    batch = take_batch(queue, 10, abandoned=among({2}))
    assert [a.reply for a in batch] == [1]
    assert queue[0] is job  # left for the backend to run, in order
    queue.popleft()
    assert [a.reply for a in take_batch(queue, 10, abandoned=among(()))] == [3]
    assert not queue


def test_take_batch_respects_the_limit() -> None:
    queue: deque[object] = deque(req(i, "a", str(i)) for i in range(5))
    assert [a.reply for a in take_batch(queue, 2, abandoned=among(()))] == [0, 1]
    assert len(queue) == 3


# -- properties ---------------------------------------------------------------------------------

STREAMS = "abc"


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[str], list[Append[int]]]:
    """A committed log (the stream of each revision from 1 on) and a batch to plan after it."""
    history = draw(st.lists(st.sampled_from(STREAMS), max_size=12))
    size = draw(st.integers(min_value=0, max_value=12))
    batch = []
    for reply in range(size):
        stream = draw(st.sampled_from(STREAMS))
        count = draw(st.integers(min_value=0, max_value=3))
        base = draw(st.none() | st.integers(min_value=0, max_value=len(history) + 2 * size))
        batch.append(Append(stream, tuple(ev(f"{reply}.{i}") for i in range(count)), base, reply))
    return history, batch


def stale_in(history: list[str], checks: list[tuple[str, int]]) -> set[tuple[str, int]]:
    """What the database answers: pairs with a committed event of the stream above the base."""
    return {
        (stream, base)
        for stream, base in checks
        if any(s == stream for s in history[base:])  # revisions base+1.. are indices base..
    }


def one_by_one(history: list[str], batch: list[Append[int]]) -> tuple[list[int | str], list[Row]]:
    """The reference: each append committed alone, in order, as the memory backend does."""
    log = list(history)
    results: list[int | str] = []
    rows: list[Row] = []
    for append in batch:
        base = append.base_revision
        if base is not None and append.stream in log[base:]:
            results.append("conflict")
            continue
        for event in append.events:
            log.append(append.stream)
            rows.append(Row(len(log), append.stream, event.type, event.data))
        results.append(len(log))
    return results, rows


@given(scenarios())
def test_a_batch_commits_as_its_appends_would_one_by_one(
    scenario: tuple[list[str], list[Append[int]]],
) -> None:
    history, batch = scenario
    plan = plan_batch(batch, len(history), stale_in(history, conflict_checks(batch)))
    expected_outcomes, expected_rows = one_by_one(history, batch)
    assert outcomes(plan.outcomes) == expected_outcomes
    assert list(plan.rows) == expected_rows
    # Every caller is answered once, in batch order.
    assert [reply for reply, _ in plan.outcomes] == [a.reply for a in batch]


@given(scenarios())
def test_revisions_are_gap_free_and_strictly_increasing(
    scenario: tuple[list[str], list[Append[int]]],
) -> None:
    history, batch = scenario
    head = len(history)
    plan = plan_batch(batch, head, stale_in(history, conflict_checks(batch)))
    assert [r.revision for r in plan.rows] == list(range(head + 1, plan.head + 1))
    written = [o for _, o in plan.outcomes if not isinstance(o, Conflict)]
    assert written == sorted(written)
    assert all(head <= o <= plan.head for o in written)


@given(scenarios())
def test_a_conflict_does_not_change_its_neighbours_outcomes(
    scenario: tuple[list[str], list[Append[int]]],
) -> None:
    history, batch = scenario
    stale = stale_in(history, conflict_checks(batch))
    plan = plan_batch(batch, len(history), stale)
    conflicted = {reply for reply, o in plan.outcomes if isinstance(o, Conflict)}
    kept = [a for a in batch if a.reply not in conflicted]
    without = plan_batch(kept, len(history), stale)
    assert without.rows == plan.rows
    assert [o for o in plan.outcomes if o[0] not in conflicted] == list(without.outcomes)


@given(
    st.lists(st.one_of(st.integers(0, 20), st.none()), max_size=20),
    st.integers(min_value=1, max_value=8),
    st.frozensets(st.integers(0, 20)),
)
def test_take_batch_takes_the_first_run_of_live_appends(
    items: list[int | None], limit: int, gone: frozenset[int]
) -> None:
    # An int is an append with that reply; None is another kind of write.
    queue: deque[object] = deque(object() if i is None else req(i, "s", "x") for i in items)
    before = list(queue)
    batch = take_batch(queue, limit, abandoned=among(gone))
    taken = before[: len(before) - len(queue)]
    assert list(queue) == before[len(taken) :]
    assert all(isinstance(item, Append) for item in taken)
    assert batch == [a for a in taken if isinstance(a, Append) and a.reply not in gone]
    assert len(batch) <= limit
    # It stopped because the batch is full, the queue is empty, or another write comes next.
    assert len(batch) == limit or not queue or not isinstance(queue[0], Append)
