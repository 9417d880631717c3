"""The dashboard in a real browser against a real service: records opened in the page, live
updates, no secret on the wire, resuming across a restart, time travel, a screenshot."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, Request, Route, expect

from membership.sealing import ClusterKey, seal_record
from membership.secrets import new_cluster_secret
from tests.membership import test_sealing as kat
from tests.support.process import ServiceProcess
from tests.ui.cluster import Cluster, b64, mesh_health, record
from tests.ui.conftest import start_service

pytestmark = pytest.mark.slow


def test_shows_talos_sealed_records_and_a_live_update_within_a_second(
    page: Page, service: ServiceProcess, tmp_path: Path
) -> None:
    cluster = Cluster(service.url)
    cluster.put("a", record("node-a", 1), ["192.0.2.1:51820", "[2001:db8::1]:51820"])
    stranger = ClusterKey(new_cluster_secret(os.urandom(32)))
    cluster.put_raw("forged", seal_record(stranger, record("node-x", 9), os.urandom(12)), [])

    page.goto(cluster.dashboard)
    row = page.locator('#members tr[data-id="a"]')
    expect(row.locator(".hostname")).to_have_text("node-a")
    expect(row.locator(".node-id")).to_have_text("node-id-node-a")
    expect(row.locator(".machine-type")).to_have_text("controlplane (api :6443)")
    expect(row.locator(".os")).to_have_text("Talos (v1.9.0)")
    expect(row.locator(".addresses")).to_have_text("10.5.0.1 fd00:5::1")
    expect(row.locator(".endpoints")).to_have_text("192.0.2.1:51820 [2001:db8::1]:51820")
    expect(row.locator(".kubespan-key")).to_have_text(b64(bytes([1]) * 32))
    expect(row.locator(".kubespan-address")).to_have_text("fd7a:115c:a1e0::1")
    # A record that does not open is shown as such, not hidden.
    forged = page.locator('#members tr[data-id="forged"]')
    expect(forged).to_have_class("undecryptable")
    expect(forged.locator(".hostname")).to_contain_text("cannot decrypt")
    expect(page.locator("#live")).to_have_text("live")

    started = time.monotonic()
    cluster.put("b", record("node-b", 2), ["192.0.2.2:51820"])
    expect(page.locator('#members tr[data-id="b"] .hostname')).to_have_text("node-b", timeout=1000)
    assert time.monotonic() - started < 1.0
    expect(page.locator("#changes li").first).to_contain_text("joined node-b")

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"dashboard screenshot: {shot}")


def test_opens_the_known_answer_bytes_of_a_talos_record(
    page: Page, service: ServiceProcess
) -> None:
    # The bytes the sealing known-answer tests pin (what a Talos node publishes for RECORD).
    cluster = Cluster(service.url, secret=kat.SECRET)
    cluster.put_raw("talos", kat.SEALED_RECORD, [kat.SEALED_ENDPOINT_V4, kat.SEALED_ENDPOINT_V6])
    page.goto(cluster.dashboard)
    row = page.locator('#members tr[data-id="talos"]')
    expect(row.locator(".hostname")).to_have_text("worker-1")
    expect(row.locator(".node-id")).to_have_text(kat.RECORD.node_id)
    expect(row.locator(".machine-type")).to_have_text("worker")
    expect(row.locator(".addresses")).to_have_text("10.5.0.2")
    expect(row.locator(".endpoints")).to_have_text("10.0.0.2:51820 [2001:db8::1]:51820")
    expect(row.locator(".kubespan-key")).to_have_text(
        "PLPNBddmTgHJhtw0vxltq1ZBdPP9RNOEUd5JjJZzBRY="
    )
    expect(row.locator(".kubespan-address")).to_have_text("fd50:8d60:4238:6302:f857:23ff:fe21:d1e0")


def test_mesh_health_is_drawn_as_a_grid_when_records_carry_it(
    page: Page, service: ServiceProcess
) -> None:
    cluster = Cluster(service.url)
    key_a, key_b, key_gone = bytes([1]) * 32, bytes([2]) * 32, bytes([0xAB]) * 32
    cluster.put("a", record("node-a", 1), [], extra=mesh_health([(key_b, 1, 3, 12)]))
    cluster.put(
        "b",
        record("node-b", 2),
        [],
        extra=mesh_health([(key_a, 2, 0, 0xFFFF), (key_gone, 1, 1, 5)], omitted=2),
    )
    cluster.put("c", record("node-c", 3), [])  # publishes no health: no row of its own
    page.goto(cluster.dashboard)
    expect(page.locator("#members tr[data-id='c'] .hostname")).to_have_text("node-c")
    grid = page.locator("#mesh")
    expect(grid.locator("thead th")).to_have_text(
        ["from \\ to", "key abababab…", "node-a", "node-b"]
    )
    row_a, row_b = grid.locator("tbody tr").nth(0), grid.locator("tbody tr").nth(1)
    expect(row_a.locator("th")).to_have_text("node-a")
    expect(row_a.locator("td")).to_have_text(["", "", "up ⇄↓"])
    expect(row_a.locator("td.self")).to_have_count(1)
    expect(row_a.locator("td.up")).to_have_attribute("title", re.compile("handshake 12 s ago"))
    expect(row_b.locator("td")).to_have_text(["up ↓", "down", ""])
    expect(row_b.locator("td.down")).to_have_attribute("title", re.compile("no handshake"))
    expect(row_b.locator("th")).to_have_attribute("title", re.compile("2 peers left out"))


def test_the_secret_is_in_no_request_and_in_no_log_line(
    page: Page, service: ServiceProcess
) -> None:
    cluster = Cluster(service.url)
    cluster.put("a", record("node-a", 1), ["192.0.2.1:51820"])
    sent: list[str] = []

    def capture(request: Request) -> None:
        sent.append(request.url)
        sent.extend(f"{k}: {v}" for k, v in request.all_headers().items())
        sent.append(request.post_data or "")

    page.on("request", capture)
    page.goto(cluster.dashboard)
    expect(page.locator('#members tr[data-id="a"] .hostname')).to_have_text("node-a")
    page.locator("#travel-revision").fill("1")
    page.locator("#travel-go").click()
    expect(page.locator("#travel-title")).to_contain_text("revision 1")
    cluster.put("b", record("node-b", 2), [])
    expect(page.locator('#members tr[data-id="b"] .hostname')).to_have_text("node-b")

    forms = {cluster.secret, quote(cluster.secret, safe=""), quote(cluster.secret)}
    assert any("/watch" in line for line in sent) and any("/events" in line for line in sent)
    for line in sent:
        assert not any(form in line for form in forms), line
    access_log = service.output()
    assert "/watch" in access_log and "/affiliates?at=1" in access_log
    assert not any(form in access_log for form in forms)


def test_resumes_after_a_restart_without_reload_and_misses_no_change(
    page: Page, tmp_path: Path
) -> None:
    first = start_service(tmp_path)
    cluster = Cluster(first.url)
    second: ServiceProcess | None = None
    try:
        cluster.put("x", record("node-x", 3), [])
        page.goto(cluster.dashboard)
        expect(page.locator('#members tr[data-id="x"] .hostname')).to_have_text("node-x")
        page.evaluate("window.sameDocument = true")
        first.stop()
        expect(page.locator("#live")).not_to_have_text("live")
        second = start_service(tmp_path, http_port=first.http_port)
        # Both changes land before the page is back: it must replay them, not skip them.
        cluster.put("y", record("node-y", 4), [])
        cluster.delete("x")
        expect(page.locator('#members tr[data-id="y"] .hostname')).to_have_text("node-y")
        expect(page.locator('#members tr[data-id="x"]')).to_have_count(0)
        expect(page.locator("#live")).to_have_text("live")
        assert page.evaluate("window.sameDocument") is True
        changes = page.locator("#changes li")
        expect(changes.filter(has_text="joined node-y")).to_have_count(1)
        expect(changes.filter(has_text="left node-x")).to_have_count(1)
    finally:
        first.kill()
        if second is not None:
            second.stop()


def test_time_travel_shows_an_earlier_membership(page: Page, service: ServiceProcess) -> None:
    cluster = Cluster(service.url)
    r1 = cluster.put("a", record("node-a", 1), [])
    r2 = cluster.put("b", record("node-b", 2), [])
    cluster.put("a", record("node-a-renamed", 1), [])
    cluster.delete("b")
    page.goto(cluster.dashboard)
    expect(page.locator("#members tbody tr")).to_have_count(1)

    page.locator("#travel-revision").fill(str(r1))
    page.locator("#travel-go").click()
    travel = page.locator("#travel-members tbody tr")
    expect(page.locator("#travel-title")).to_contain_text(f"revision {r1}: 1 members")
    expect(travel.locator(".hostname")).to_have_text(["node-a"])

    # The timeline lists every event; clicking one shows the membership right after it.
    page.locator(f'#timeline li[data-revision="{r2}"]').click()
    expect(page.locator("#travel-title")).to_contain_text(f"revision {r2}: 2 members")
    expect(travel.locator(".hostname")).to_have_text(["node-a", "node-b"])
    # The live view is untouched by looking back.
    expect(page.locator("#members .hostname")).to_have_text(["node-a-renamed"])


def test_docs_and_redoc_render_with_every_other_host_blocked(
    page: Page, service: ServiceProcess
) -> None:
    own = service.url
    outside: list[str] = []

    def only_the_service(route: Route) -> None:
        if route.request.url.startswith(own):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_service)
    page.goto(own + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Discovery service")
    expect(page.locator(".opblock").first).to_be_visible()
    page.goto(own + "/redoc")
    expect(page.get_by_role("heading", name="Discovery service")).to_be_visible()
    page.goto(own + "/")
    expect(page.locator('tr[data-key="ready"] td')).to_have_text("yes")
    assert outside == []


def test_landing_page_counts_refresh_live(page: Page, service: ServiceProcess) -> None:
    page.goto(service.url + "/")
    expect(page.locator('tr[data-key="affiliates"] td')).to_have_text("0")
    Cluster(service.url).put("a", record("node-a", 1), ["192.0.2.1:51820"])
    expect(page.locator('tr[data-key="affiliates"] td')).to_have_text("1", timeout=5000)
    expect(page.locator('tr[data-key="endpoints"] td')).to_have_text("1")
    expect(page.get_by_role("link", name="Open the dashboard")).to_have_attribute("href", "/ui")
