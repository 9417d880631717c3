"""The agent's YAML config: one file, identical on every machine of a cluster.

Every key is checked and unknown keys are errors, because a typo such as `mtU: 1380` that
silently falls back to a default only shows up later as a black-holed MTU.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from ipaddress import ip_network
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from kubespan.wgdump import parse_endpoint
from membership.limits import CLUSTER_ID_MAX, TTL_MAX
from membership.record import EndpointAddr, IPNetwork
from membership.secrets import CLUSTER_SECRET_SIZE, decode_cluster_secret, is_valid_cluster_secret

T = TypeVar("T")

DEFAULT_PORT = 51820
DEFAULT_MTU = 1420
MIN_MTU = 1280
MAX_MTU = 9000

_DEFAULT_PORTS = {"http": 80, "https": 443, "grpc": 80, "grpcs": 443}
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_DURATION_FULL = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ms|s|m|h))+")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ConfigError(ValueError):
    """The config is invalid; the message starts with the offending field's path."""


@dataclass(frozen=True, slots=True)
class DiscoveryEndpoint:
    """A discovery service: `http(s)://` is our HTTP API, `grpc(s)://` is Talos' gRPC API."""

    url: str
    scheme: str
    host: str
    port: int
    path: str = ""

    @property
    def protocol(self) -> str:
        return "grpc" if self.scheme.startswith("grpc") else "http"

    @property
    def tls(self) -> bool:
        return self.scheme in ("https", "grpcs")

    @property
    def address(self) -> str:
        """`host:port`, IPv6 literals bracketed (what gRPC channels expect)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class EndpointFilter:
    """One Talos `filters.endpoints` entry: keep IPs in `network`, or drop them if `exclude`."""

    network: IPNetwork
    exclude: bool = False

    def __str__(self) -> str:
        return f"!{self.network}" if self.exclude else str(self.network)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    id: str
    # repr=False: configs end up in logs and tracebacks; the secret must not.
    secret: str = field(repr=False)

    @property
    def secret_bytes(self) -> bytes:
        return decode_cluster_secret(self.secret)


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveryConfig:
    endpoints: tuple[DiscoveryEndpoint, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshConfig:
    port: int = DEFAULT_PORT
    mtu: int = DEFAULT_MTU
    advertised_networks: tuple[IPNetwork, ...] = ()
    excluded_networks: tuple[IPNetwork, ...] = ()
    endpoint_filters: tuple[EndpointFilter, ...] = ()
    extra_endpoints: tuple[EndpointAddr, ...] = ()
    force_routing: bool = True
    keepalive_seconds: int = 25


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """Overrides; None means "ask the machine"."""

    hostname: str | None = None
    nodename: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TimingConfig:
    endpoint_timeout: timedelta = timedelta(seconds=15)
    peer_down: timedelta = timedelta(seconds=275)
    reconcile: timedelta = timedelta(seconds=30)
    ttl: timedelta = timedelta(minutes=30)
    refresh: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    cluster: ClusterConfig
    discovery: DiscoveryConfig
    mesh: MeshConfig = MeshConfig()
    node: NodeConfig = NodeConfig()
    timing: TimingConfig = TimingConfig()


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str | int | float | bool) and key in seen:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _mapping(value: object, path: str, allowed: tuple[str, ...]) -> Mapping[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path or 'config'}: must be a mapping")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{path or 'config'}: keys must be strings, got {key!r}")
        if key not in allowed:
            hint = difflib.get_close_matches(key, allowed, n=1)
            suggestion = f"did you mean {hint[0]!r}?" if hint else f"expected {', '.join(allowed)}"
            raise ConfigError(f"{path + '.' if path else ''}{key}: unknown key ({suggestion})")
    return value


def _section(
    factory: Callable[..., T],
    raw: object,
    path: str,
    parsers: Mapping[str, Callable[[object, str], object]],
    required: bool = False,
) -> T:
    if raw is None and required:
        raise ConfigError(f"{path}: required")
    given = {k: v for k, v in _mapping(raw, path, tuple(parsers)).items() if v is not None}
    for key in parsers if required else ():
        if key not in given:
            raise ConfigError(f"{path}.{key}: required")
    # Absent (or null) keys fall back to the dataclass defaults.
    return factory(**{k: parsers[k](v, f"{path}.{k}") for k, v in given.items()})


def _int(lo: int, hi: int) -> Callable[[object, str], int]:
    def parse(value: object, path: str) -> int:
        # bool is an int subclass: `mtu: yes` must not become 1.
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(f"{path}: must be an integer between {lo} and {hi}")
        return value

    return parse


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: must be true or false")
    return value


def _str(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: must be a non-empty string (quote values YAML would retype)")
    return value


def _list(item: Callable[[object, str], T]) -> Callable[[object, str], tuple[T, ...]]:
    def parse(value: object, path: str) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: must be a list")
        return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))

    return parse


def _network(value: object, path: str) -> IPNetwork:
    text = _str(value, path)
    try:
        return ip_network(text)
    except ValueError:
        pass
    try:
        masked = ip_network(text, strict=False)
    except ValueError:
        raise ConfigError(f"{path}: {text!r} is not a CIDR (e.g. 10.0.0.0/8)") from None
    raise ConfigError(f"{path}: {text!r} has host bits set (did you mean {masked}?)")


def _filter(value: object, path: str) -> EndpointFilter:
    text = _str(value, path)
    exclude = text.startswith("!")
    return EndpointFilter(_network(text[1:] if exclude else text, path), exclude)


def _extra_endpoint(value: object, path: str) -> EndpointAddr:
    text = _str(value, path)
    try:
        return parse_endpoint(text)
    except ValueError:
        raise ConfigError(
            f"{path}: {text!r} must be IP:port, IPv6 in brackets (e.g. [2001:db8::1]:51820)"
        ) from None


def _discovery_endpoint(value: object, path: str) -> DiscoveryEndpoint:
    url = _str(value, path).strip()
    bad = f"{path}: {url!r} must be http(s)://host:port or grpc(s)://host:port"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(bad) from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(bad)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"{path}: {url!r} must not carry credentials, a query or a fragment")
    path_part = parts.path.rstrip("/")
    if path_part and parts.scheme.startswith("grpc"):
        raise ConfigError(f"{path}: {url!r}: gRPC endpoints take no path")
    return DiscoveryEndpoint(
        url=url,
        scheme=parts.scheme,
        host=parts.hostname,
        port=port if port is not None else _DEFAULT_PORTS[parts.scheme],
        path=path_part,
    )


def _endpoints(value: object, path: str) -> tuple[DiscoveryEndpoint, ...]:
    endpoints = _list(_discovery_endpoint)(value, path)
    if not endpoints:
        raise ConfigError(f"{path}: must list at least one endpoint")
    return endpoints


def _duration(value: object, path: str) -> timedelta:
    seconds = 0.0
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION_FULL.fullmatch(value):
        seconds = sum(
            float(m.group(1)) * _UNIT_SECONDS[m.group(2)] for m in _DURATION_RE.finditer(value)
        )
    if not seconds > 0:
        raise ConfigError(f"{path}: must be a positive duration in seconds or like 15s, 4m35s, 1h")
    return timedelta(seconds=seconds)


def _cluster_id(value: object, path: str) -> str:
    cluster_id = _str(value, path)
    if len(cluster_id.encode()) > CLUSTER_ID_MAX:
        raise ConfigError(f"{path}: must be at most {CLUSTER_ID_MAX} bytes")
    return cluster_id


def _secret(value: object, path: str) -> str:
    secret = _str(value, path)
    if not is_valid_cluster_secret(secret):
        # Never echo the value: it is the cluster's encryption key.
        raise ConfigError(f"{path}: must be standard base64 of exactly {CLUSTER_SECRET_SIZE} bytes")
    return secret


_CLUSTER_PARSERS = {"id": _cluster_id, "secret": _secret}
_DISCOVERY_PARSERS = {"endpoints": _endpoints}
_MESH_PARSERS: dict[str, Callable[[object, str], object]] = {
    "port": _int(1, 65535),
    "mtu": _int(MIN_MTU, MAX_MTU),
    "advertised_networks": _list(_network),
    "excluded_networks": _list(_network),
    "endpoint_filters": _list(_filter),
    "extra_endpoints": _list(_extra_endpoint),
    "force_routing": _bool,
    "keepalive_seconds": _int(0, 65535),
}


def _timing(raw: object) -> TimingConfig:
    keys = tuple(TimingConfig.__dataclass_fields__)
    timing = _section(TimingConfig, raw, "timing", dict.fromkeys(keys, _duration))
    if raw is None or not isinstance(raw, dict) or raw.get("refresh") is None:
        timing = replace(timing, refresh=timing.ttl / 2)
    if timing.ttl > TTL_MAX:
        raise ConfigError(f"timing.ttl: must be at most {_format_duration(TTL_MAX)}")
    if timing.refresh >= timing.ttl:
        raise ConfigError("timing.refresh: must be shorter than timing.ttl")
    if timing.endpoint_timeout >= timing.peer_down:
        raise ConfigError("timing.endpoint_timeout: must be shorter than timing.peer_down")
    return timing


def load_config(text: str) -> Config:
    """Parse and validate a YAML config; raises ConfigError naming the bad field."""
    try:
        raw = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: invalid YAML: {exc}") from None
    top = _mapping(raw, "", tuple(Config.__dataclass_fields__))
    return Config(
        cluster=_section(
            ClusterConfig, top.get("cluster"), "cluster", _CLUSTER_PARSERS, required=True
        ),
        discovery=_section(
            DiscoveryConfig, top.get("discovery"), "discovery", _DISCOVERY_PARSERS, required=True
        ),
        mesh=_section(MeshConfig, top.get("mesh"), "mesh", _MESH_PARSERS),
        node=_section(NodeConfig, top.get("node"), "node", {"hostname": _str, "nodename": _str}),
        timing=_timing(top.get("timing")),
    )


def _format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds == int(seconds) and int(seconds) % size == 0:
            return f"{int(seconds) // size}{unit}"
    return f"{seconds:.6f}".rstrip("0") + "s"


def _plain(value: object) -> object:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, timedelta):
        return _format_duration(value)
    if isinstance(value, DiscoveryEndpoint):
        return value.url
    return value if isinstance(value, bool | int | str) else str(value)


def render_config(config: Config) -> str:
    """YAML text that load_config turns back into an equal Config."""
    doc: dict[str, dict[str, object]] = {}
    for section in fields(config):
        part = getattr(config, section.name)
        values = {f.name: getattr(part, f.name) for f in fields(part)}
        doc[section.name] = {k: _plain(v) for k, v in values.items() if v is not None}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def gen_config(cluster_id: str, secret: str, endpoint: str) -> str:
    """A fresh config for `kubespan gen-secrets`; raises ConfigError on bad arguments."""
    draft = {
        "cluster": {"id": cluster_id, "secret": secret},
        "discovery": {"endpoints": [endpoint]},
    }
    config = load_config(yaml.safe_dump(draft))
    header = (
        "# kubespan agent config: copy it unchanged to every machine of the cluster.\n"
        "# cluster.secret encrypts discovery data and is the WireGuard preshared key: keep it\n"
        "# private (mode 0600).\n"
    )
    return header + render_config(config)
