"""Loading the agent config: Talos defaults, every section set, discovery endpoints, models."""

from __future__ import annotations

from datetime import timedelta
from ipaddress import IPv4Address, IPv6Address, ip_network

import pytest

from kubespan import config_defaults as defaults
from kubespan.config import (
    ClusterConfig,
    Config,
    DiscoveryConfig,
    DiscoveryEndpoint,
    EndpointFilter,
    TimingConfig,
    load_config,
)
from membership.record import EndpointAddr
from tests.kubespan.config_support import CLUSTER_ID, MINIMAL, SECRET, with_section


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


def test_null_sections_and_keys_take_defaults() -> None:
    config = load_config(with_section("mesh:\nnode:\ntiming:\n  ttl:\n"))
    assert config.mesh.mtu == 1420 and config.timing.ttl == timedelta(minutes=30)


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
