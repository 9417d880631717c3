"""Rendering the agent config back to YAML, and generating a commented starting config."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kubespan.config import Config, ConfigError, gen_config, load_config, render_config
from tests.kubespan.config_support import CLUSTER_ID, SECRET, with_section


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
    assert config.discovery.endpoints[0].scheme == "grpcs"
    assert "mtu: 1420" in text and "refresh: 15m" in text


def test_gen_config_validates_its_arguments() -> None:
    with pytest.raises(ConfigError, match=r"discovery\.endpoints"):
        gen_config(CLUSTER_ID, SECRET, "discovery.example:3001")
    with pytest.raises(ConfigError, match=r"cluster\.secret"):
        gen_config(CLUSTER_ID, "short", "http://a:1")
