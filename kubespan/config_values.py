"""The config's value types and their field types: discovery URLs, networks, endpoint filters,
WireGuard endpoints, durations, the cluster id and secret.

Each parser raises `invalid(...)` with the wording users see after the field's path; pydantic
calls them (as plain validators) and does the rest: keys, nesting, lists, required fields.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, PlainValidator, Strict

from kubespan.config_errors import NON_EMPTY, invalid
from kubespan.wgdump import parse_endpoint
from membership.limits import CLUSTER_ID_MAX
from membership.record import EndpointAddr, IPNetwork
from membership.secrets import CLUSTER_SECRET_SIZE, is_valid_cluster_secret

T = TypeVar("T")

_DEFAULT_PORTS = {"http": 80, "https": 443, "grpc": 80, "grpcs": 443}
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_DURATION_FULL = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ms|s|m|h))+")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class DiscoveryEndpoint:
    """A discovery service: `http(s)://` is our HTTP API, `grpc(s)://` is Talos' gRPC API."""

    url: str
    scheme: str
    host: str
    port: int
    path: str = ""


@dataclass(frozen=True, slots=True)
class EndpointFilter:
    """One Talos `filters.endpoints` entry: keep IPs in `network`, or drop them if `exclude`."""

    network: IPNetwork
    exclude: bool = False

    def __str__(self) -> str:
        return f"!{self.network}" if self.exclude else str(self.network)


def format_duration(value: timedelta) -> str:
    """The shortest of `1h`, `15m`, `30s`, `0.5s` that parses back to `value`."""
    seconds = value.total_seconds()
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds == int(seconds) and int(seconds) % size == 0:
            return f"{int(seconds) // size}{unit}"
    return f"{seconds:.6f}".rstrip("0") + "s"


def _text(value: object) -> str:
    # YAML retypes bare words (`yes`, `12`, `2024-01-01`): a string field takes only strings.
    if not isinstance(value, str) or not value:
        raise invalid(NON_EMPTY)
    return value


def _only_list(value: object) -> object:
    # pydantic would also take a set (YAML `!!set`), whose order is arbitrary.
    if not isinstance(value, list | tuple):
        raise invalid("must be a list")
    return value


def _network(value: object) -> IPNetwork:
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    text = _text(value)
    try:
        return ip_network(text)
    except ValueError:
        pass
    try:
        masked = ip_network(text, strict=False)
    except ValueError:
        raise invalid(f"{text!r} is not a CIDR (e.g. 10.0.0.0/8)") from None
    raise invalid(f"{text!r} has host bits set (did you mean {masked}?)")


def _filter(value: object) -> EndpointFilter:
    if isinstance(value, EndpointFilter):
        return value
    text = _text(value)
    exclude = text.startswith("!")
    return EndpointFilter(_network(text[1:] if exclude else text), exclude)


def _extra_endpoint(value: object) -> EndpointAddr:
    if isinstance(value, EndpointAddr):
        return value
    text = _text(value)
    try:
        return parse_endpoint(text)
    except ValueError:
        raise invalid(
            f"{text!r} must be IP:port, IPv6 in brackets (e.g. [2001:db8::1]:51820)"
        ) from None


def _discovery_endpoint(value: object) -> DiscoveryEndpoint:
    if isinstance(value, DiscoveryEndpoint):
        return value
    url = _text(value).strip()
    bad = invalid(f"{url!r} must be http(s)://host:port or grpc(s)://host:port")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise bad from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise bad
    if parts.query or parts.fragment or parts.username or parts.password:
        raise invalid(f"{url!r} must not carry credentials, a query or a fragment")
    path = parts.path.rstrip("/")
    if path and parts.scheme.startswith("grpc"):
        raise invalid(f"{url!r}: gRPC endpoints take no path")
    return DiscoveryEndpoint(
        url=url,
        scheme=parts.scheme,
        host=parts.hostname,
        port=port if port is not None else _DEFAULT_PORTS[parts.scheme],
        path=path,
    )


def _at_least_one(endpoints: tuple[DiscoveryEndpoint, ...]) -> tuple[DiscoveryEndpoint, ...]:
    if not endpoints:
        raise invalid("must list at least one endpoint")
    return endpoints


def _duration(value: object) -> timedelta:
    positive = invalid("must be a positive duration in seconds or like 15s, 4m35s, 1h")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # float() of a 400-digit integer raises; as infinity it gets the "too long" below.
        seconds = float(value) if isinstance(value, float) or abs(value) < 10**300 else math.inf
    elif isinstance(value, str) and _DURATION_FULL.fullmatch(value):
        seconds = sum(
            float(m.group(1)) * _UNIT_SECONDS[m.group(2)] for m in _DURATION_RE.finditer(value)
        )
    else:
        raise positive
    if not seconds > 0:  # also refuses NaN
        raise positive
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise invalid(f"must be at most {timedelta.max.days} days") from None


def _cluster_id(cluster_id: str) -> str:
    if len(cluster_id.encode()) > CLUSTER_ID_MAX:
        raise invalid(f"must be at most {CLUSTER_ID_MAX} bytes")
    return cluster_id


def _secret(secret: str) -> str:
    if not is_valid_cluster_secret(secret):
        # Never echo the value: it is the cluster's encryption key.
        raise invalid(f"must be standard base64 of exactly {CLUSTER_SECRET_SIZE} bytes")
    return secret


def _as_text(value: object) -> str:
    return str(value)


def _as_url(value: DiscoveryEndpoint) -> str:
    return value.url


# Field types. The serializers (JSON mode only, so model_dump() keeps the objects) write what
# the parsers read back: render_config relies on that round trip.
_Str = PlainSerializer(_as_text, return_type=str, when_used="json")
YamlList = Annotated[tuple[T, ...], BeforeValidator(_only_list)]
Text = Annotated[str, Strict(), Field(min_length=1)]
Port = Annotated[int, Strict(), Field(ge=1, le=65535)]
Network = Annotated[IPNetwork, PlainValidator(_network), _Str]
Filter = Annotated[EndpointFilter, PlainValidator(_filter), _Str]
ExtraEndpoint = Annotated[EndpointAddr, PlainValidator(_extra_endpoint), _Str]
Endpoint = Annotated[
    DiscoveryEndpoint,
    PlainValidator(_discovery_endpoint),
    PlainSerializer(_as_url, return_type=str, when_used="json"),
]
Endpoints = Annotated[YamlList[Endpoint], AfterValidator(_at_least_one)]
Duration = Annotated[
    timedelta,
    PlainValidator(_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
ClusterId = Annotated[Text, AfterValidator(_cluster_id)]
ClusterSecret = Annotated[Text, AfterValidator(_secret)]
