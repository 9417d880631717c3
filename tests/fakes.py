"""Fakes for the layers above the real adapters (never a substitute for testing those)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from discovery.client import (
    ClientError,
    Deleted,
    HelloReply,
    RawAffiliate,
    Snapshot,
    Updated,
    WatchEvent,
)
from discovery.core import validate
from discovery.core.changes import Change, change_of
from discovery.core.errors import ServiceError
from discovery.core.ratelimit import RateLimiter
from kubespan.identity import public_key_of
from kubespan.wg import WgError
from membership.commands import delete_affiliate, update_affiliate
from membership.errors import DomainError
from membership.events import Event
from membership.limits import DEFAULT_LIMITS, TTL_MAX, Limits
from membership.model import Affiliate, ClusterView, UpdateRequest
from membership.registry import fold


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


# -- kubespan: the system seam (kubespan/wg.py) ------------------------------------------

RunHandler = Callable[[list[str], bytes | None], bytes]


class FakeRunner:
    """A Runner that records argv (and stdin) and answers by the longest matching prefix.

    Unmatched commands succeed with empty output. Canned answers are bytes, an exception to
    raise, or a handler called with (argv, stdin).
    """

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.stdins: list[bytes | None] = []
        self._canned: list[tuple[tuple[str, ...], bytes | Exception | RunHandler]] = []

    def on(self, *prefix: str, output: bytes | str | Exception | RunHandler = b"") -> None:
        answer = output.encode() if isinstance(output, str) else output
        self._canned.append((prefix, answer))

    async def run(self, argv: Sequence[str], *, stdin: bytes | None = None) -> bytes:
        args = list(argv)
        self.calls.append(args)
        self.stdins.append(stdin)
        best: bytes | Exception | RunHandler = b""
        best_len = -1
        for prefix, answer in self._canned:
            # Later registrations win ties, so a test can override a default.
            if tuple(args[: len(prefix)]) == prefix and len(prefix) >= best_len:
                best, best_len = answer, len(prefix)
        if isinstance(best, Exception):
            raise best
        if callable(best):
            return best(args, stdin)
        return best

    def commands(self, *prefix: str) -> list[list[str]]:
        """The recorded argvs that start with `prefix`."""
        return [c for c in self.calls if tuple(c[: len(prefix)]) == prefix]


def _wg_error(argv: Sequence[str], rc: int, message: str) -> WgError:
    return WgError(list(argv[0:2]), rc, message)


@dataclass
class FakePeer:
    public_key: str
    preshared_key: str | None = None
    endpoint: str | None = None
    allowed_ips: tuple[str, ...] = ()
    handshake: int = 0
    rx: int = 0
    tx: int = 0
    keepalive: int = 0


@dataclass
class FakeHost:
    """A pretend machine behind a FakeRunner: NICs for `ip addr`, one WireGuard link that
    `wg set` edits and `wg show dump` reports, policy rules and the last nft script."""

    mac: str = "02:00:00:00:00:01"
    addresses: list[tuple[str, str, int]] = field(
        default_factory=lambda: [("eth0", "10.99.0.11", 24)]
    )
    kernel_wireguard: bool = False
    link: str | None = None
    link_kind: str | None = None
    private_key: str | None = None
    listen_port: int = 0
    fwmark: int = 0
    peers: dict[str, FakePeer] = field(default_factory=dict)
    rules: dict[str, int] = field(default_factory=lambda: {"-4": 0, "-6": 0})
    nft: str | None = None

    def install(self, runner: FakeRunner) -> FakeRunner:
        runner.on("ip", "-j", "-d", "addr", "show", output=self._ip_addr)
        runner.on("ip", "-j", "-d", "link", "show", output=self._ip_link)
        runner.on("ip", "link", "add", output=self._link_add)
        runner.on("ip", "link", "del", output=self._link_del)
        runner.on("wireguard-go", output=self._wireguard_go)
        for family in ("-4", "-6"):
            runner.on("ip", "-j", family, "rule", "show", output=self._rule_show)
            runner.on("ip", family, "rule", output=self._rule_change)
        runner.on("wg", "show", output=self._wg_show)
        runner.on("wg", "set", output=self._wg_set)
        runner.on("nft", "-f", "-", output=self._nft)
        return runner

    def _ip_addr(self, argv: list[str], stdin: bytes | None) -> bytes:
        links: dict[str, dict[str, Any]] = {
            "lo": {
                "ifname": "lo",
                "flags": ["LOOPBACK", "UP"],
                "link_type": "loopback",
                "address": "00:00:00:00:00:00",
                "addr_info": [],
            },
        }
        for name, ip, prefixlen in self.addresses:
            link = links.setdefault(
                name,
                {
                    "ifname": name,
                    "flags": ["BROADCAST", "UP"],
                    "link_type": "ether",
                    "address": self.mac,
                    "addr_info": [],
                },
            )
            link["addr_info"].append(
                {
                    "family": "inet6" if ":" in ip else "inet",
                    "local": ip,
                    "prefixlen": prefixlen,
                    "scope": "global",
                }
            )
        return json.dumps(list(links.values())).encode()

    def _ip_link(self, argv: list[str], stdin: bytes | None) -> bytes:
        if self.link is None or argv[-1] != self.link:
            raise _wg_error(argv, 1, f'Device "{argv[-1]}" does not exist.')
        info = {"ifname": self.link, "link_type": "none", "linkinfo": {"info_kind": self.link_kind}}
        return json.dumps([info]).encode()

    def _create(self, name: str, kind: str) -> None:
        self.link, self.link_kind = name, kind
        self.private_key, self.listen_port, self.fwmark, self.peers = None, 0, 0, {}

    def _link_add(self, argv: list[str], stdin: bytes | None) -> bytes:
        if not self.kernel_wireguard:
            raise _wg_error(argv, 2, "Error: Unknown device type.")
        self._create(argv[argv.index("dev") + 1], "wireguard")
        return b""

    def _wireguard_go(self, argv: list[str], stdin: bytes | None) -> bytes:
        self._create(argv[-1], "tun")
        return b""

    def _link_del(self, argv: list[str], stdin: bytes | None) -> bytes:
        if self.link is None:
            raise _wg_error(argv, 1, "Cannot find device")
        self.link = self.link_kind = None
        self.peers = {}
        return b""

    def _rule_show(self, argv: list[str], stdin: bytes | None) -> bytes:
        rule = {"priority": 32500, "src": "all", "fwmark": "0x40", "fwmask": "0x60", "table": "180"}
        return json.dumps([rule] * self.rules[argv[2]]).encode()

    def _rule_change(self, argv: list[str], stdin: bytes | None) -> bytes:
        family, action = argv[1], argv[3]
        if action == "add":
            self.rules[family] += 1
        elif self.rules[family] == 0:
            raise _wg_error(argv, 2, "RTNETLINK answers: No such file or directory")
        else:
            self.rules[family] -= 1
        return b""

    def dump(self) -> str:
        def key(value: str | None) -> str:
            return value or "(none)"

        public = public_key_of(self.private_key) if self.private_key else None
        fwmark = f"{self.fwmark:#x}" if self.fwmark else "off"
        lines = [f"{key(self.private_key)}\t{key(public)}\t{self.listen_port}\t{fwmark}"]
        for p in self.peers.values():
            lines.append(
                "\t".join(
                    [
                        p.public_key,
                        key(p.preshared_key),
                        key(p.endpoint),
                        ",".join(p.allowed_ips) or "(none)",
                        str(p.handshake),
                        str(p.rx),
                        str(p.tx),
                        str(p.keepalive) if p.keepalive else "off",
                    ]
                )
            )
        return "\n".join(lines) + "\n"

    def _wg_show(self, argv: list[str], stdin: bytes | None) -> bytes:
        if self.link is None or argv[2] != self.link:
            raise _wg_error(argv, 1, "Unable to access interface: No such device")
        return self.dump().encode()

    def _wg_set(self, argv: list[str], stdin: bytes | None) -> bytes:
        if self.link is None or argv[2] != self.link:
            raise _wg_error(argv, 1, "Unable to modify interface: No such device")
        args = argv[3:]
        while args and args[0] != "peer":
            option, value, args = args[0], args[1], args[2:]
            if option == "private-key":
                self.private_key = Path(value).read_text().strip()
            elif option == "listen-port":
                self.listen_port = int(value)
            elif option == "fwmark":
                self.fwmark = 0 if value == "off" else int(value, 0)
        if not args:
            return b""
        public_key, args = args[1], args[2:]
        if args == ["remove"]:
            self.peers.pop(public_key, None)
            return b""
        peer = self.peers.setdefault(public_key, FakePeer(public_key))
        while args:
            option, value, args = args[0], args[1], args[2:]
            if option == "preshared-key":
                text = Path(value).read_text().strip()
                peer.preshared_key = text or None
            elif option == "endpoint":
                peer.endpoint = value
            elif option == "persistent-keepalive":
                peer.keepalive = 0 if value == "off" else int(value)
            elif option == "allowed-ips":
                peer.allowed_ips = tuple(v for v in value.split(",") if v)
        return b""

    def _nft(self, argv: list[str], stdin: bytes | None) -> bytes:
        self.nft = (stdin or b"").decode()
        return b""


# -- kubespan: discovery (discovery/client/) --------------------------------------------


@dataclass
class FakeDiscovery:
    """An in-memory discovery service for agent tests; `client()` is a DiscoveryClient.

    It has no rules of its own: membership.commands decide, the registry folds, and the
    core's own functions check input and pick what watchers see, so the contract suite
    (tests/discovery/test_client_fake.py) holds it to what the real clients do. A watch
    resumes after a revision, as over HTTP. `down = True` makes every call fail and breaks
    open watches, like a stopped service.
    """

    url: str = "http://discovery.test:3001"
    client_ip: str | None = "203.0.113.7"
    redirect: str | None = None
    limits: Limits = DEFAULT_LIMITS
    rate_limiter: RateLimiter | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    views: dict[str, ClusterView] = field(default_factory=dict)
    revision: int = 0
    updates: list[tuple[str, str, bytes | None, tuple[bytes, ...], timedelta]] = field(
        default_factory=list
    )
    deletes: list[tuple[str, str]] = field(default_factory=list)
    hellos: int = 0
    watch_since: list[int | None] = field(default_factory=list)
    _down: bool = False
    # Every visible change in revision order, so a watch can resume after any of them.
    _changes: list[tuple[str, Change]] = field(default_factory=list)
    _watchers: dict[str, list[asyncio.Queue[WatchEvent | Exception]]] = field(default_factory=dict)

    def client(self) -> FakeDiscoveryClient:
        return FakeDiscoveryClient(self)

    @property
    def down(self) -> bool:
        return self._down

    @down.setter
    def down(self, value: bool) -> None:
        self._down = value
        for queue in [q for queues in self._watchers.values() for q in queues if value]:
            queue.put_nowait(ClientError("connection reset", retryable=True))

    def admit(self, cluster_id: str) -> None:
        """What every call meets first: a running service, the rate limit, a valid cluster."""
        if self._down:
            raise ClientError("discovery service unreachable: connection refused", retryable=True)
        if self.rate_limiter is not None and self.rate_limiter.acquire(
            self.client_ip, time.monotonic()
        ):
            raise ClientError("rate limit exceeded", retryable=True)
        with _refused():
            validate.cluster_id(cluster_id, self.limits)

    def put(self, cluster: str, affiliate: RawAffiliate, ttl: timedelta = TTL_MAX) -> None:
        """Store an affiliate as an update from some node would (data replaces, endpoints merge)."""
        with _refused():
            request = UpdateRequest(
                affiliate_id=validate.affiliate_id(affiliate.id, self.limits),
                data=validate.affiliate_data(affiliate.data, self.limits),
                endpoints=validate.endpoints(affiliate.endpoints, self.limits),
                ttl=ttl,
            )
            self._decide(
                cluster, update_affiliate(self._view(cluster), request, self.clock(), self.limits)
            )

    def remove(self, cluster: str, affiliate_id: str) -> None:
        with _refused():
            validate.affiliate_id(affiliate_id, self.limits)
            self._decide(cluster, delete_affiliate(self._view(cluster), affiliate_id))

    def stored(self, cluster: str) -> tuple[int, list[Affiliate]]:
        """(revision, the cluster's affiliates as the service holds them), like the core's list."""
        return self.revision, list(self._view(cluster).affiliates.values())

    def subscribe(
        self, cluster: str, since: int | None
    ) -> tuple[list[WatchEvent], asyncio.Queue[WatchEvent | Exception]]:
        """The first events of a watch and the queue of later ones, taken in one step."""
        queue: asyncio.Queue[WatchEvent | Exception] = asyncio.Queue()
        self._watchers.setdefault(cluster, []).append(queue)
        if since is not None and since <= self.revision:
            missed = [c for stream, c in self._changes if stream == cluster and c.revision > since]
            return [_watch_event(c) for c in missed], queue
        affiliates = tuple(_raw(a) for a in self._view(cluster).affiliates.values())
        return [Snapshot(affiliates, self.revision)], queue

    def unsubscribe(self, cluster: str, queue: asyncio.Queue[WatchEvent | Exception]) -> None:
        self._watchers[cluster].remove(queue)

    def _view(self, cluster: str) -> ClusterView:
        return self.views.get(cluster) or ClusterView(cluster)

    def _decide(self, cluster: str, events: list[Event]) -> None:
        for event in events:
            self.revision += 1
            fold(self.views, cluster, event, self.revision)
            change = change_of(self.revision, event)
            if change is not None:
                self._changes.append((cluster, change))
                for queue in self._watchers.get(cluster, []):
                    queue.put_nowait(_watch_event(change))


def _raw(affiliate: Affiliate) -> RawAffiliate:
    return RawAffiliate(affiliate.id, affiliate.data, affiliate.endpoint_blobs())


def _watch_event(change: Change) -> WatchEvent:
    if change.affiliate is None:
        return Deleted(change.affiliate_id, change.revision)
    return Updated(_raw(change.affiliate), change.revision)


@contextlib.contextmanager
def _refused() -> Iterator[None]:
    # The core's refusals (bad input, TTL, capacity) as a client sees them: not retryable.
    try:
        yield
    except (ServiceError, DomainError) as exc:
        raise ClientError(str(exc), retryable=False) from exc


class FakeDiscoveryClient:
    def __init__(self, service: FakeDiscovery) -> None:
        self.service = service
        self.endpoint = service.url
        self.closed = False

    def _admit(self, cluster_id: str) -> None:
        if self.closed:
            raise ClientError("client is closed", retryable=False)
        self.service.admit(cluster_id)

    async def hello(self, cluster_id: str, client_version: str) -> HelloReply:
        self._admit(cluster_id)
        self.service.hellos += 1
        ip = ip_address(self.service.client_ip) if self.service.client_ip else None
        redirect = self.service.redirect
        # As both real clients do: a bare "host:port" (the Talos form) keeps our scheme.
        if redirect and "://" not in redirect:
            redirect = f"{self.endpoint.split('://', 1)[0]}://{redirect}"
        return HelloReply(client_ip=ip, redirect=redirect or None)

    async def update(
        self,
        cluster_id: str,
        affiliate_id: str,
        *,
        data: bytes | None,
        endpoints: Sequence[bytes],
        ttl: timedelta,
    ) -> None:
        self._admit(cluster_id)
        self.service.updates.append((cluster_id, affiliate_id, data, tuple(endpoints), ttl))
        self.service.put(cluster_id, RawAffiliate(affiliate_id, data or b"", tuple(endpoints)), ttl)

    async def delete(self, cluster_id: str, affiliate_id: str) -> None:
        self._admit(cluster_id)
        self.service.deletes.append((cluster_id, affiliate_id))
        self.service.remove(cluster_id, affiliate_id)

    async def list(self, cluster_id: str) -> list[RawAffiliate]:
        self._admit(cluster_id)
        return [_raw(a) for a in self.service.stored(cluster_id)[1]]

    async def watch(
        self, cluster_id: str, *, since: int | None = None
    ) -> AsyncIterator[WatchEvent]:
        self._admit(cluster_id)
        self.service.watch_since.append(since)
        first, queue = self.service.subscribe(cluster_id, since)
        try:
            for event in first:
                yield event
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.service.unsubscribe(cluster_id, queue)

    async def aclose(self) -> None:
        self.closed = True
