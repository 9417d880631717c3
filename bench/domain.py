"""The per-event cost of the pure domain: fold, event codec, snapshot, downtime credit.

Every worker folds every event and decodes those it did not write, so these are the serial
costs behind write throughput; the snapshot decode and the credit are on the restart path.
Figures are CPU time of this process (best of several rounds), so a busy machine inflates
them less than wall time would.

    python -m bench.domain            # 100 clusters of 100 affiliates; 100,000 for the snapshot
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from membership.codec import decode_event, encode_event, event_type
from membership.events import (
    GLOBAL_STREAM,
    AffiliateRefreshed,
    AffiliateUpdated,
    DowntimeCredited,
    Event,
)
from membership.model import Affiliate, ClusterView, Endpoint
from membership.registry import fold
from membership.snapshot import decode_snapshot, encode_snapshot

EXPIRES = datetime(2030, 1, 1, tzinfo=UTC)


def _best(run: Callable[[], object], rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return min(times)


def _affiliate(aid: str, data: bytes) -> Affiliate:
    endpoints = (Endpoint(os.urandom(16), EXPIRES), Endpoint(os.urandom(16), EXPIRES))
    return Affiliate(aid, data, endpoints, EXPIRES)


def _views(clusters: int, per_cluster: int, data: bytes) -> dict[str, ClusterView]:
    views: dict[str, ClusterView] = {}
    for c in range(clusters):
        members = {f"node-{i}": _affiliate(f"node-{i}", data) for i in range(per_cluster)}
        views[f"cluster-{c}"] = ClusterView(f"cluster-{c}", members, 1)
    return views


def _per_event(views: dict[str, ClusterView], events: list[tuple[str, Event]]) -> float:
    def run() -> None:
        folded = dict(views)
        for revision, (stream, event) in enumerate(events, 2):
            fold(folded, stream, event, revision)

    return _best(run) / len(events) * 1e6


def run(events: int = 20_000, per_cluster: int = 100, affiliates: int = 100_000) -> dict[str, Any]:
    data = os.urandom(600)
    views = _views(100, per_cluster, data)
    ids = [(f"cluster-{i % 100}", f"node-{i % per_cluster}") for i in range(events)]
    updates: list[tuple[str, Event]] = [
        (c, AffiliateUpdated(affiliate=_affiliate(a, data))) for c, a in ids
    ]
    expiries = (EXPIRES, EXPIRES)
    refreshes: list[tuple[str, Event]] = [
        (c, AffiliateRefreshed(affiliate_id=a, expires_at=EXPIRES, endpoint_expiries=expiries))
        for c, a in ids
    ]
    stored = [(event_type(e), encode_event(e)) for _, e in updates]
    refreshed = [(event_type(e), encode_event(e)) for _, e in refreshes]
    result: dict[str, Any] = {
        "fold_update_us": _per_event(views, updates),
        "fold_refresh_us": _per_event(views, refreshes),
        "decode_update_us": _best(lambda: [decode_event(t, p) for t, p in stored]) / events * 1e6,
        "decode_refresh_us": _best(lambda: [decode_event(t, p) for t, p in refreshed])
        / events
        * 1e6,
        "encode_update_us": _best(lambda: [encode_event(e) for _, e in updates]) / events * 1e6,
        "update_payload_bytes": len(stored[0][1]),
    }
    big = _views(affiliates // 1000, 1000, os.urandom(1024))
    blob = encode_snapshot(big.values())
    credit = DowntimeCredited(down_from=EXPIRES, down_until=EXPIRES + timedelta(minutes=5))
    result |= {
        "snapshot_affiliates": affiliates,
        "snapshot_mb": round(len(blob) / 2**20, 1),
        "snapshot_encode_s": _best(lambda: encode_snapshot(big.values()), 3),
        "snapshot_decode_s": _best(lambda: decode_snapshot(blob), 3),
        "credit_s": _best(lambda: fold(dict(big), GLOBAL_STREAM, credit, 0), 3),
    }
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
