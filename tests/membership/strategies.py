"""Hypothesis strategies shared by the membership tests, and the "live service" driver.

The driver decides every command against the current views with a clock that only moves
forward, folds each event the moment it is decided (as the service's projection does) and
keeps the log of (stream, event, revision) triples, so tests can compare replay with live.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st

from membership.commands import collect_garbage, delete_affiliate, update_affiliate
from membership.errors import DomainError
from membership.events import (
    GLOBAL_STREAM,
    AffiliateDeleted,
    AffiliateExpired,
    AffiliateRefreshed,
    AffiliateUpdated,
    DowntimeCredited,
    EndpointsExpired,
    Event,
    NodeRevoked,
)
from membership.limits import Limits
from membership.model import Affiliate, ClusterView, Endpoint, UpdateRequest
from membership.registry import fold

T0 = datetime(2024, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)

Stored = tuple[str, Event, int]

# ---------------------------------------------------------------------------------------
# Arbitrary values, for the codec.

_OFFSETS = (UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8)))


def utc_datetimes() -> st.SearchStrategy[datetime]:
    """Any UTC instant datetime can represent, to the microsecond."""
    return st.datetimes(timezones=st.just(UTC))


def aware_datetimes() -> st.SearchStrategy[datetime]:
    """Instants in several offsets, away from the ends of the datetime range."""
    return (
        st.datetimes(
            min_value=datetime(1900, 1, 1),
            max_value=datetime(2200, 1, 1),
            timezones=st.sampled_from(_OFFSETS),
        )
        | utc_datetimes()
    )


def endpoints(times: st.SearchStrategy[datetime]) -> st.SearchStrategy[tuple[Endpoint, ...]]:
    return st.lists(st.builds(Endpoint, st.binary(max_size=40), times), max_size=3).map(tuple)


def affiliates() -> st.SearchStrategy[Affiliate]:
    times = aware_datetimes()
    return st.builds(
        Affiliate,
        id=st.text(max_size=12),
        data=st.binary(max_size=80),
        endpoints=endpoints(times),
        expires_at=times,
    )


def events() -> st.SearchStrategy[Event]:
    """Every event type with arbitrary contents."""
    ids = st.text(max_size=12)
    times = aware_datetimes()
    return st.one_of(
        st.builds(AffiliateUpdated, affiliate=affiliates()),
        st.builds(EndpointsExpired, affiliate=affiliates()),
        st.builds(
            AffiliateRefreshed,
            affiliate_id=ids,
            expires_at=times,
            endpoint_expiries=st.lists(times, max_size=5).map(tuple),
        ),
        st.builds(AffiliateDeleted, affiliate_id=ids),
        st.builds(AffiliateExpired, affiliate_id=ids),
        st.builds(DowntimeCredited, down_from=times, down_until=times),
        st.builds(
            NodeRevoked,
            node_key=st.binary(min_size=32, max_size=32),
            signature=st.binary(min_size=64, max_size=64),
        ),
    )


def _view(
    cluster_id: str, members: list[Affiliate], revision: int, revoked: frozenset[bytes]
) -> ClusterView:
    return ClusterView(cluster_id, {a.id: a for a in members}, revision, revoked)


def cluster_views() -> st.SearchStrategy[ClusterView]:
    """Views whose affiliates are keyed by their own ids, with any revision."""
    return st.builds(
        _view,
        st.text(min_size=1, max_size=12),
        st.lists(affiliates(), max_size=3),
        st.integers(min_value=0, max_value=2**63),
        st.frozensets(st.binary(min_size=32, max_size=32), max_size=2),
    )


# ---------------------------------------------------------------------------------------
# Command sequences over small pools, so that updates collide, limits bite and GC matters.

CLUSTERS = ("c1", "c1", "c1", "c2")  # mostly one cluster, so updates collide
AFFILIATE_IDS = ("a1", "a2", "a3", "a4")
DATA = (None, b"", b"d1", b"d2")
BLOBS = (b"e1", b"e2", b"e3", b"e4")
# Small enough that four affiliate ids and four blobs overflow them.
SMALL_LIMITS = Limits(cluster_affiliates_max=3, affiliate_endpoints_max=3)


@dataclass(frozen=True, slots=True)
class Update:
    cluster_id: str
    request: UpdateRequest


@dataclass(frozen=True, slots=True)
class Delete:
    cluster_id: str
    affiliate_id: str


@dataclass(frozen=True, slots=True)
class CollectGarbage:
    """Collect garbage in every cluster, as the maintenance loop does."""


@dataclass(frozen=True, slots=True)
class CreditDowntime:
    """The service is down for `span` from now (zero or negative: a no-op credit)."""

    span: timedelta


Command = Update | Delete | CollectGarbage | CreditDowntime


@dataclass(frozen=True, slots=True)
class Step:
    advance: timedelta
    command: Command


def ttls(limits: Limits) -> st.SearchStrategy[timedelta]:
    edges = [timedelta(0), -timedelta(seconds=1), US, limits.ttl_max, limits.ttl_max + US]
    return st.sampled_from(edges) | st.timedeltas(
        min_value=-timedelta(minutes=2), max_value=limits.ttl_max + timedelta(minutes=2)
    )


def advances() -> st.SearchStrategy[timedelta]:
    edges = [timedelta(0), US, timedelta(seconds=1), timedelta(minutes=10)]
    return st.sampled_from(edges) | st.timedeltas(
        min_value=timedelta(0), max_value=timedelta(minutes=5)
    )


def _updates(limits: Limits) -> st.SearchStrategy[Update]:
    return st.builds(
        Update,
        st.sampled_from(CLUSTERS),
        st.builds(
            UpdateRequest,
            affiliate_id=st.sampled_from(AFFILIATE_IDS),
            data=st.sampled_from(DATA),
            endpoints=st.lists(st.sampled_from(BLOBS), max_size=4).map(tuple),
            ttl=ttls(limits),
        ),
    )


def commands(limits: Limits) -> st.SearchStrategy[Command]:
    """Mostly updates, as in a real cluster; then GC, deletes and downtime credits."""
    delete = st.builds(Delete, st.sampled_from(CLUSTERS), st.sampled_from(AFFILIATE_IDS))
    credit = st.builds(
        CreditDowntime,
        st.sampled_from([timedelta(0), -timedelta(minutes=1)])
        | st.timedeltas(min_value=US, max_value=timedelta(hours=2)),
    )
    kinds: list[st.SearchStrategy[Command]] = [
        *(_updates(limits) for _ in range(6)),
        st.just(CollectGarbage()),
        st.just(CollectGarbage()),
        delete,
        credit,
    ]
    # one_of picks a branch evenly, so weight by repeating branches; repeats of one same
    # strategy object collapse into one branch, hence six distinct update strategies.
    return st.one_of(kinds)


def _flatten(chunks: list[list[Step]]) -> list[Step]:
    return [step for chunk in chunks for step in chunk]


def steps(limits: Limits = SMALL_LIMITS) -> st.SearchStrategy[list[Step]]:
    """Scripts of up to 100 steps, some 20 to 25 on average.

    A list of chunks, not one list: without a min_size a list averages five elements, and
    with one, failures took Hypothesis over five minutes to shrink (chunks shrink in seconds).
    """
    chunk = st.lists(st.builds(Step, advances(), commands(limits)), max_size=10)
    return st.lists(chunk, max_size=10).map(_flatten)


@dataclass(frozen=True, slots=True)
class Transition:
    """What one step did: the views around it and the events it appended."""

    step: Step
    now: datetime
    before: dict[str, ClusterView]
    after: dict[str, ClusterView]
    emitted: tuple[tuple[str, Event], ...]
    error: DomainError | None


@dataclass(slots=True)
class LiveRun:
    """A service with no I/O: decide, append, fold, in that order, one command at a time."""

    limits: Limits = SMALL_LIMITS
    now: datetime = T0
    views: dict[str, ClusterView] = field(default_factory=dict)
    log: list[Stored] = field(default_factory=list)

    def view(self, cluster_id: str) -> ClusterView:
        return self.views.get(cluster_id) or ClusterView(cluster_id)

    def _append(self, stream: str, events: list[Event], out: list[tuple[str, Event]]) -> None:
        for event in events:
            revision = len(self.log) + 1
            fold(self.views, stream, event, revision)
            self.log.append((stream, event, revision))
            out.append((stream, event))

    def step(self, step: Step) -> Transition:
        self.now += step.advance
        now = self.now
        before = dict(self.views)
        out: list[tuple[str, Event]] = []
        error: DomainError | None = None
        match step.command:
            case Update(cluster_id=cid, request=request):
                try:
                    events = update_affiliate(self.view(cid), request, now, self.limits)
                except DomainError as exc:
                    error = exc
                else:
                    self._append(cid, events, out)
            case Delete(cluster_id=cid, affiliate_id=aid):
                self._append(cid, delete_affiliate(self.view(cid), aid), out)
            case CollectGarbage():
                for cid in list(self.views):
                    self._append(cid, collect_garbage(self.views[cid], now), out)
            case CreditDowntime(span=span):
                credit = DowntimeCredited(down_from=now, down_until=now + span)
                self._append(GLOBAL_STREAM, [credit], out)
                self.now = max(now, now + span)
        return Transition(step, now, before, dict(self.views), tuple(out), error)


def run_live(
    script: list[Step],
    limits: Limits = SMALL_LIMITS,
    observe: Callable[[Transition, LiveRun], None] | None = None,
) -> LiveRun:
    """Run `script` live, calling `observe` after every step."""
    run = LiveRun(limits=limits)
    for step in script:
        transition = run.step(step)
        if observe is not None:
            observe(transition, run)
    return run
