from __future__ import annotations

import base64
import textwrap
from datetime import timedelta
from ipaddress import IPv4Address, IPv6Address, ip_network

import pytest

from kubespan import config_defaults as defaults
from kubespan.config import (
    ClusterConfig,
    Config,
    ConfigError,
    DiscoveryConfig,
    DiscoveryEndpoint,
    EndpointFilter,
    TimingConfig,
    gen_config,
    load_config,
    render_config,
)
from membership.record import EndpointAddr

SECRET = base64.b64encode(bytes(range(32))).decode()
CLUSTER_ID = "8XuV9TZHW08DOk3bVxQjH9ih_TBKjnh-j44tsCLSBzo="

MINIMAL = f"""
cluster:
  id: {CLUSTER_ID}
  secret: {SECRET}
discovery:
  endpoints: [http://discovery.example:3001]
"""


def with_section(extra: str) -> str:
    return MINIMAL + textwrap.dedent(extra)


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(text)
    return str(info.value)


def test_minimal_config_gets_talos_defaults() -> None:
    config = load_config(MINIMAL)
    assert config.cluster.id == CLUSTER_ID
    assert config.cluster.secret_bytes == bytes(range(32))
    mesh = config.mesh
    assert (mesh.port, mesh.mtu, mesh.force_routing, mesh.keepalive_seconds) == (
        51820,
        1420,
        True,
        25,
    )
    assert mesh.advertised_networks == mesh.excluded_networks == ()
    assert mesh.endpoint_filters == ()
    assert mesh.extra_endpoints == ()
    assert config.node.hostname is None and config.node.nodename is None
    t = config.timing
    # Talos' reconcile interval; shorter endpoint and peer-down timeouts than Talos' 15 s and
    # 275 s, because the agent observes WireGuard every second (see config_defaults).
    assert (t.endpoint_timeout, t.peer_down, t.reconcile) == (
        timedelta(seconds=6),
        timedelta(seconds=45),
        timedelta(seconds=30),
    )
    assert config.node.machine_type == "worker"
    assert (t.ttl, t.refresh) == (timedelta(minutes=30), timedelta(minutes=15))


def test_full_config() -> None:
    config = load_config(
        with_section(
            """
            mesh:
              port: 51821
              mtu: 1380
              advertised_networks: [10.244.0.0/16, "fd00:10::/64"]
              excluded_networks: [192.168.100.0/24]
              endpoint_filters: ["0.0.0.0/0", "!10.0.0.0/8", "::/0"]
              extra_endpoints: ["203.0.113.1:4000", "[2001:db8::1]:51820"]
              force_routing: false
              keepalive_seconds: 0
            node:
              hostname: node-1.example
              nodename: node-1
            timing:
              endpoint_timeout: 10s
              peer_down: 4m35s
              reconcile: 500ms
              ttl: 20m
            """
        )
    )
    mesh = config.mesh
    assert mesh.port == 51821 and mesh.mtu == 1380 and not mesh.force_routing
    assert mesh.advertised_networks == (ip_network("10.244.0.0/16"), ip_network("fd00:10::/64"))
    assert mesh.endpoint_filters == (
        EndpointFilter(ip_network("0.0.0.0/0")),
        EndpointFilter(ip_network("10.0.0.0/8"), exclude=True),
        EndpointFilter(ip_network("::/0")),
    )
    assert mesh.extra_endpoints == (
        EndpointAddr(IPv4Address("203.0.113.1"), 4000),
        EndpointAddr(IPv6Address("2001:db8::1"), 51820),
    )
    assert config.node.nodename == "node-1"
    t = config.timing
    assert t.peer_down == timedelta(seconds=275)
    assert t.reconcile == timedelta(milliseconds=500)
    # refresh defaults to ttl/2 of the configured ttl, not of the default one.
    assert t.refresh == timedelta(minutes=10)


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "path"),
    [
        ("http://d.example:3001", "http", "d.example", 3001, ""),
        ("https://d.example/", "https", "d.example", 443, ""),
        ("grpcs://discovery.talos.dev:443", "grpcs", "discovery.talos.dev", 443, ""),
        ("grpc://[fd00::1]:3000", "grpc", "fd00::1", 3000, ""),
        ("https://lb.example/discovery/", "https", "lb.example", 443, "/discovery"),
    ],
)
def test_discovery_endpoints(url: str, scheme: str, host: str, port: int, path: str) -> None:
    config = load_config(MINIMAL.replace("http://discovery.example:3001", f"'{url}'"))
    assert config.discovery.endpoints == (DiscoveryEndpoint(url, scheme, host, port, path),)


def test_discovery_endpoint_helpers() -> None:
    grpc = DiscoveryEndpoint("grpc://[fd00::1]:3000", "grpc", "fd00::1", 3000)
    assert (grpc.protocol, grpc.tls, grpc.address) == ("grpc", False, "[fd00::1]:3000")
    https = DiscoveryEndpoint("https://d:1", "https", "d", 1)
    assert (https.protocol, https.tls, https.address) == ("http", True, "d:1")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("mesh: {mtu: 1000}", "mesh.mtu: must be an integer between 1280 and 9000"),
        ("mesh: {mtu: 9001}", "mesh.mtu: must be an integer between 1280 and 9000"),
        ("mesh: {mtu: '1420'}", "mesh.mtu: must be an integer"),
        ("mesh: {mtu: true}", "mesh.mtu: must be an integer"),
        ("mesh: {port: 0}", "mesh.port: must be an integer between 1 and 65535"),
        ("mesh: {mtU: 1380}", "mesh.mtU: unknown key (did you mean 'mtu'?)"),
        ("mesh: {bogus: 1}", "mesh.bogus: unknown key (expected port, mtu"),
        ("meshh: {}", "meshh: unknown key (did you mean 'mesh'?)"),
        ("mesh: [1]", "mesh: must be a mapping"),
        ("mesh: {force_routing: 'yes'}", "mesh.force_routing: must be true or false"),
        ("mesh: {advertised_networks: 10.0.0.0/8}", "mesh.advertised_networks: must be a list"),
        ("mesh: {advertised_networks: [10.0.0.1/8]}", "host bits set (did you mean 10.0.0.0/8?)"),
        ("mesh: {excluded_networks: [nope]}", "mesh.excluded_networks[0]: 'nope' is not a CIDR"),
        ("mesh: {endpoint_filters: ['!x']}", "mesh.endpoint_filters[0]: 'x' is not a CIDR"),
        ("mesh: {extra_endpoints: ['fd00::1:51820']}", "extra_endpoints[0]: 'fd00::1:51820' must"),
        ("mesh: {extra_endpoints: ['[10.0.0.1]:1']}", "mesh.extra_endpoints[0]"),
        ("mesh: {extra_endpoints: ['host.example:1']}", "mesh.extra_endpoints[0]"),
        ("mesh: {extra_endpoints: ['10.0.0.1:70000']}", "mesh.extra_endpoints[0]"),
        ("mesh: {extra_endpoints: ['10.0.0.1']}", "mesh.extra_endpoints[0]"),
        ("mesh: {keepalive_seconds: -1}", "mesh.keepalive_seconds: must be an integer"),
        ("node: {nodename: ''}", "node.nodename: must be a non-empty string"),
        ("node: {nodename: 12}", "node.nodename: must be a non-empty string"),
        ("timing: {ttl: 31m}", "timing.ttl: must be at most 30m"),
        ("timing: {ttl: 10m, refresh: 10m}", "timing.refresh: must be shorter than timing.ttl"),
        ("timing: {peer_down: 5}", "timing.endpoint_timeout: must be shorter than timing.peer"),
        ("timing: {reconcile: 0}", "timing.reconcile: must be a positive duration"),
        ("timing: {reconcile: 30x}", "timing.reconcile: must be a positive duration"),
        ("timing: {reconcile: 1m30}", "timing.reconcile: must be a positive duration"),
        ("timing: {reconcile: false}", "timing.reconcile: must be a positive duration"),
    ],
)
def test_errors_name_the_field(extra: str, message: str) -> None:
    assert message in error_of(with_section(extra))


CLUSTER = f"cluster: {{id: x, secret: '{SECRET}'}}\n"


def disc(endpoint: str) -> str:
    return CLUSTER + f"discovery: {{endpoints: [{endpoint}]}}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "cluster: required"),
        ("[]", "config: must be a mapping"),
        (CLUSTER, "discovery: required"),
        ("discovery: {endpoints: [http://a:1]}", "cluster: required"),
        ("cluster: {id: x}\ndiscovery: {endpoints: [http://a:1]}", "cluster.secret: required"),
        (f"cluster: {{secret: '{SECRET}'}}", "cluster.id: required"),
        (f"cluster: {{id: 12, secret: '{SECRET}'}}", "cluster.id: must be a non-empty string"),
        (f"cluster: {{id: {'x' * 257}, secret: '{SECRET}'}}", "cluster.id: must be at most 256"),
        (disc(""), "discovery.endpoints: must list at least one"),
        (disc("ftp://a:1"), "discovery.endpoints[0]: 'ftp://a:1' must be http(s)://host:port"),
        (disc("'http://a:99999'"), "discovery.endpoints[0]"),
        (disc("'http://u:p@a:1'"), "must not carry credentials"),
        (disc("'grpc://a:1/x'"), "gRPC endpoints take no path"),
        (disc("'http://:1'"), "discovery.endpoints[0]"),
        ("a: [", "config: invalid YAML"),
        ("cluster: {}\ncluster: {}", "line 2: duplicate key 'cluster'"),
    ],
)
def test_structural_errors(text: str, message: str) -> None:
    assert message in error_of(text)


def test_duplicate_keys_are_rejected_in_nested_sections() -> None:
    message = error_of(with_section("mesh:\n  mtu: 1380\n  mtu: 1400\n"))
    assert "duplicate key 'mtu'" in message


@pytest.mark.parametrize(
    "secret",
    [
        base64.b64encode(bytes(31)).decode(),
        base64.b64encode(bytes(33)).decode(),
        base64.urlsafe_b64encode(b"\xff" * 32).decode(),
        "not base64!",
    ],
)
def test_secret_must_be_32_bytes_of_standard_base64_and_is_never_echoed(secret: str) -> None:
    message = error_of(MINIMAL.replace(SECRET, f"'{secret}'"))
    assert message == "cluster.secret: must be standard base64 of exactly 32 bytes"
    assert secret not in message


def test_secret_is_not_in_repr() -> None:
    assert SECRET not in repr(load_config(MINIMAL))


def test_null_sections_and_keys_take_defaults() -> None:
    config = load_config(with_section("mesh:\nnode:\ntiming:\n  ttl:\n"))
    assert config.mesh.mtu == 1420 and config.timing.ttl == timedelta(minutes=30)


def test_render_round_trips() -> None:
    config = load_config(
        with_section(
            """
            mesh:
              advertised_networks: [10.244.0.0/16]
              endpoint_filters: ["!10.0.0.0/8", "0.0.0.0/0"]
              extra_endpoints: ["[2001:db8::1]:51820"]
            node: {nodename: n1}
            timing: {reconcile: 1.5s, ttl: 1h30m, refresh: 7m}
            """
        ).replace("ttl: 1h30m", "ttl: 25m")
    )
    assert load_config(render_config(config)) == config


def test_render_round_trips_odd_durations() -> None:
    config = load_config(with_section("timing: {endpoint_timeout: 0.000001, reconcile: 61}"))
    assert config.timing.endpoint_timeout == timedelta(microseconds=1)
    assert load_config(render_config(config)) == config


def test_gen_config_is_loadable_and_commented() -> None:
    text = gen_config(CLUSTER_ID, SECRET, "grpcs://discovery.talos.dev:443")
    assert text.startswith("# kubespan agent config")
    config = load_config(text)
    assert isinstance(config, Config)
    assert config.cluster.id == CLUSTER_ID
    assert config.discovery.endpoints[0].protocol == "grpc"
    assert "mtu: 1420" in text and "refresh: 15m" in text


def test_gen_config_validates_its_arguments() -> None:
    with pytest.raises(ConfigError, match=r"discovery\.endpoints"):
        gen_config(CLUSTER_ID, SECRET, "discovery.example:3001")
    with pytest.raises(ConfigError, match=r"cluster\.secret"):
        gen_config(CLUSTER_ID, "short", "http://a:1")


@pytest.mark.parametrize(
    "value",
    [".inf", "-.inf", ".nan", "1" + "0" * 400, "9" * 400 + "s", "99999999999h"],
)
def test_absurd_durations_are_config_errors(value: str) -> None:
    assert error_of(with_section(f"timing: {{reconcile: {value}}}")).startswith(
        "timing.reconcile: must be "
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("? [a]\n: 1\n", "config: invalid YAML: while constructing a mapping"),
        ("mesh: " + "[" * 5000 + "]" * 5000, "config: invalid YAML: nested too deeply"),
        ("mesh: {1: 2}", "mesh: keys must be strings, got 1"),
        ("mesh: {advertised_networks: !!set {10.0.0.0/8}}", "mesh.advertised_networks: must be"),
        ("mesh: {extra_endpoints: ['{x}']}", "mesh.extra_endpoints[0]: '{x}' must be IP:port"),
    ],
)
def test_odd_yaml_is_a_config_error(text: str, message: str) -> None:
    assert message in error_of(with_section(text))


def test_unknown_key_is_reported_before_the_required_key_it_hides() -> None:
    text = f"cluster: {{id: x, secrett: '{SECRET}'}}\ndiscovery: {{endpoints: ['http://a:1']}}"
    assert error_of(text) == "cluster.secrett: unknown key (did you mean 'secret'?)"


FIELDS = {
    "cluster": ("id", "secret"),
    "discovery": ("endpoints",),
    "mesh": (
        "port",
        "mtu",
        "advertised_networks",
        "excluded_networks",
        "endpoint_filters",
        "extra_endpoints",
        "force_routing",
        "keepalive_seconds",
    ),
    "node": ("hostname", "nodename"),
    "timing": ("endpoint_timeout", "peer_down", "reconcile", "ttl", "refresh"),
}


@pytest.mark.parametrize(
    ("section", "key"), [(section, key) for section, keys in FIELDS.items() for key in keys]
)
@pytest.mark.parametrize("value", ["[[1]]", "{a: 1}", "x", "''", "-1", "1.5", "true", "2024-01-01"])
def test_every_field_words_its_own_errors(section: str, key: str, value: str) -> None:
    """No field lets a pydantic message ("Input should be ...") through, whatever the value."""
    doc = {
        "cluster": {"id": "x", "secret": f"'{SECRET}'"},
        "discovery": {"endpoints": "[http://a:1]"},
    }
    doc.setdefault(section, {})[key] = value
    text = "\n".join(
        f"{name}: {{{', '.join(f'{k}: {v}' for k, v in body.items())}}}"
        for name, body in doc.items()
    )
    try:
        load_config(text)
    except ConfigError as exc:
        message = str(exc)
        # Either the field itself, or the one a cross-field rule compares it with.
        assert message.startswith(f"{section}.") and f".{key}" in message, message
        assert "Input should" not in message and SECRET not in message


def test_defaults_come_from_config_defaults() -> None:
    config = load_config(MINIMAL)
    assert (config.mesh.port, config.mesh.mtu) == (defaults.DEFAULT_PORT, defaults.DEFAULT_MTU)
    assert config.mesh.keepalive_seconds == defaults.DEFAULT_KEEPALIVE_SECONDS
    assert config.mesh.force_routing is defaults.DEFAULT_FORCE_ROUTING
    t = config.timing
    assert (t.endpoint_timeout, t.peer_down) == (
        defaults.DEFAULT_ENDPOINT_TIMEOUT,
        defaults.DEFAULT_PEER_DOWN,
    )
    assert (t.reconcile, t.ttl) == (defaults.DEFAULT_RECONCILE, defaults.DEFAULT_TTL)
    assert TimingConfig(ttl=timedelta(minutes=20)).refresh == timedelta(minutes=10)


def test_models_built_in_code_equal_loaded_ones() -> None:
    endpoint = DiscoveryEndpoint("http://discovery.example:3001", "http", "discovery.example", 3001)
    built = Config(
        cluster=ClusterConfig(id=CLUSTER_ID, secret=SECRET),
        discovery=DiscoveryConfig(endpoints=(endpoint,)),
    )
    assert built == load_config(MINIMAL)
