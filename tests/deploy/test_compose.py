"""Compose files: only settings, flags, ports and files that exist (no Docker here to ask)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from discovery.settings import Settings, parse_addr
from tests.deploy.deploy_support import DEPLOY, REPO, interpolate, listener_ports, settings_from
from tests.deploy.dockerfile import stages
from tests.deploy.nginx_conf import parse

COMPOSE_FILES = [DEPLOY / "compose.yaml", DEPLOY / "compose.ha.yaml"]
# What an operator exports before `docker compose up` (compose.ha.yaml requires it).
OPERATOR_ENV = {"POSTGRES_PASSWORD": "0123456789abcdef0123456789abcdef"}

Obj = dict[str, Any]


def _load(path: Path) -> Obj:
    doc: Obj = yaml.safe_load(path.read_text())
    return doc


def _environment(service: Obj) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v), OPERATOR_ENV) for k, v in env.items()}


def _command(service: Obj) -> list[str]:
    command = service.get("command", [])
    assert isinstance(command, list), "exec form, so no shell splits the flags"
    return [interpolate(str(c), OPERATOR_ENV) for c in command]


def _discovery_services(compose: Obj) -> dict[str, Obj]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if svc.get("build", {}).get("target") == "service"
    }


def _settings(name: str, service: Obj) -> Settings:
    return settings_from(_environment(service), _command(service), name)


def _container_ports(service: Obj) -> set[int]:
    ports = set()
    for entry in service.get("ports", []) + service.get("expose", []):
        ports.add(int(str(entry).split(":")[-1].split("/")[0]))
    return ports


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_builds_name_a_dockerfile_target_in_the_repository(path: Path) -> None:
    compose = _load(path)
    all_stages = stages()
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is None:
            assert ":" in service["image"], f"{name}: pin the image tag"
            continue
        context = (path.parent / build["context"]).resolve()
        assert context == REPO, f"{name}: the build context must be the repository root"
        assert (context / build["dockerfile"]).is_file()
        assert build["target"] in all_stages


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_discovery_settings_flags_and_ports_exist(path: Path) -> None:
    compose = _load(path)
    services = _discovery_services(compose)
    assert services
    for name, service in services.items():
        settings = _settings(f"{path.name}: {name}", service)
        listeners = listener_ports(settings)
        exposed = _container_ports(service)
        assert exposed <= listeners, f"{name}: exposes {exposed - listeners}, not a listener"
        api = {parse_addr(settings.grpc_addr)[1], parse_addr(settings.http_addr)[1]}
        assert api <= exposed, f"{name}: the gRPC and HTTP listeners must be reachable"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_mounts_name_declared_volumes_or_existing_files(path: Path) -> None:
    compose = _load(path)
    declared = set(compose.get("volumes", {}))
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (path.parent / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"


def test_single_keeps_sqlite_in_the_named_volume() -> None:
    compose = _load(DEPLOY / "compose.yaml")
    ((name, service),) = _discovery_services(compose).items()
    settings = _settings(name, service)
    assert settings.storage.startswith("sqlite:////")
    db_dir = str(Path(settings.storage.removeprefix("sqlite:///")).parent)
    mounts = dict(m.split(":")[:2] for m in service["volumes"])
    assert db_dir in mounts.values()
    assert mounts_named(mounts, db_dir) in compose["volumes"]


def mounts_named(mounts: dict[str, str], target: str) -> str:
    return next(source for source, dest in mounts.items() if dest == target)


def test_ha_replicas_share_the_healthy_postgres() -> None:
    compose = _load(DEPLOY / "compose.ha.yaml")
    replicas = _discovery_services(compose)
    assert len(replicas) in (2, 3)
    postgres = compose["services"]["postgres"]
    # The default, i.e. the image an operator gets without POSTGRES_IMAGE.
    image = interpolate(postgres["image"], OPERATOR_ENV)
    assert image.split(":")[0] == "postgres"
    assert image.split(":")[1].startswith("16")
    assert "healthcheck" in postgres
    assert any(m.endswith(":/var/lib/postgresql/data") for m in postgres["volumes"])
    pg_env = _environment(postgres)
    for name, service in replicas.items():
        url = urlsplit(_settings(name, service).storage)
        assert url.scheme == "postgresql"
        assert url.hostname == "postgres" and url.port in (None, 5432)
        assert url.username == pg_env["POSTGRES_USER"]
        assert url.password == pg_env["POSTGRES_PASSWORD"]
        assert url.path == "/" + pg_env["POSTGRES_DB"]
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_ha_proxy_reaches_every_replica_and_is_trusted_for_client_ips() -> None:
    compose = _load(DEPLOY / "compose.ha.yaml")
    replicas = _discovery_services(compose)
    proxy = compose["services"]["proxy"]
    ((conf_source, conf_target),) = (m.split(":")[:2] for m in proxy["volumes"])
    assert conf_target == "/etc/nginx/nginx.conf"
    http = parse(DEPLOY / conf_source).one("http")

    expected: dict[str, set[str]] = {"grpc": set(), "http": set()}
    for name, service in replicas.items():
        settings = _settings(name, service)
        # nginx overwrites X-Real-IP (tests/deploy/test_proxy.py), so trusting it is safe.
        assert settings.trust_x_real_ip, f"{name}: behind the proxy, trust X-Real-IP"
        expected["grpc"].add(f"{name}:{parse_addr(settings.grpc_addr)[1]}")
        expected["http"].add(f"{name}:{parse_addr(settings.http_addr)[1]}")
        assert not service.get("ports") or all(
            str(p).startswith("127.0.0.1:") for p in service["ports"]
        ), f"{name}: clients must come through the proxy"
    upstreams = {u.args[0]: {s.args[0] for s in u.all("server")} for u in http.all("upstream")}
    assert upstreams == {"discovery_grpc": expected["grpc"], "discovery_http": expected["http"]}

    listens = {int(s.all("listen")[0].args[0]) for s in http.all("server")}
    assert _container_ports(proxy) == listens
    assert set(proxy["depends_on"]) == set(replicas)


def test_ha_tls_override_adds_tls_on_the_proxy_to_the_same_upstreams() -> None:
    override = _load(DEPLOY / "compose.ha.tls.yaml")
    assert set(override["services"]) == {"proxy"}
    proxy = override["services"]["proxy"]
    mounts = {dest: source for source, dest in (m.rsplit(":", 2)[:2] for m in proxy["volumes"])}
    conf_dir = DEPLOY / mounts["/etc/nginx/tls.d"]
    assert conf_dir.is_dir()
    assert "DISCOVERY_TLS_DIR" in mounts["/etc/nginx/tls"]
    assert [int(str(p).split(":")[-1]) for p in proxy["ports"]] == [443]

    http = parse(DEPLOY / "proxy" / "nginx-ha.conf").one("http")
    assert [i.args for i in http.all("include")] == [["/etc/nginx/tls.d/*.conf"]]
    upstreams = {u.args[0] for u in http.all("upstream")}
    server = parse(conf_dir / "server.conf").one("server")
    listens = server.all("listen")
    assert {int(listen.args[0].rsplit(":", 1)[-1]) for listen in listens} == {443}
    assert all("ssl" in listen.args for listen in listens)
    for directive in ("ssl_certificate", "ssl_certificate_key"):
        assert server.one(directive).args[0].startswith("/etc/nginx/tls/")
    targets = {
        d.args[0].split("://")[1]
        for location in server.all("location")
        for d in location.all("grpc_pass") + location.all("proxy_pass")
    }
    assert targets == upstreams
