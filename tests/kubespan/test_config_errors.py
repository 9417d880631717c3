"""Agent config errors: each names its field, suggests the key meant, never echoes the secret."""

from __future__ import annotations

import base64

import pytest

from kubespan.config import ConfigError, load_config
from tests.kubespan.config_support import MINIMAL, SECRET, error_of, with_section


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
