from __future__ import annotations

import asyncio
import socket
import stat
from pathlib import Path

import pytest

from kubespan.status_api import AgentUnavailable, StatusError, StatusServer, request
from tests.fakes import FakeDiscovery
from tests.kubespan.test_agent import CLUSTER_ID, make_agent, peer_record
from tests.kubespan.test_status import STATUS, FakeSource


def get(path: Path, method: str, url: str) -> object:
    return request(path, method, url, timeout=5)


@pytest.mark.anyio
async def test_serves_json_on_a_private_socket(tmp_path: Path) -> None:
    source = FakeSource()
    server = StatusServer(tmp_path / "kubespan.sock", source)
    await server.start()
    try:
        sock = tmp_path / "kubespan.sock"
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert await asyncio.to_thread(get, sock, "GET", "/v1/status") == STATUS
        assert await asyncio.to_thread(get, sock, "GET", "/v1/members") == [{"nodename": "n1"}]
        assert await asyncio.to_thread(get, sock, "GET", "/v1/sessions") == STATUS["sessions"]
        assert await asyncio.to_thread(get, sock, "GET", "/v1/self?x=1") == {"node_id": "abc"}
        assert await asyncio.to_thread(get, sock, "POST", "/v1/leave") == {
            "deleted": ["http://d:3001"],
            "errors": {},
        }
        assert source.left == 1
        with pytest.raises(StatusError, match="HTTP 404"):
            await asyncio.to_thread(get, sock, "GET", "/v1/nope")
        with pytest.raises(StatusError, match="HTTP 405"):
            await asyncio.to_thread(get, sock, "GET", "/v1/leave")
        # Garbage in: a 400, and the server keeps serving.
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(b"garbage\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 400")
        writer.close()
        assert await asyncio.to_thread(get, sock, "GET", "/v1/peers") == []
    finally:
        await server.close()
    assert not (tmp_path / "kubespan.sock").exists()


@pytest.mark.anyio
async def test_stale_socket_is_replaced_but_a_live_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "kubespan.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a killed agent leaves the file, nobody listens
    first = StatusServer(path, FakeSource())
    await first.start()
    try:
        with pytest.raises(StatusError, match="another kubespan agent is running"):
            await StatusServer(path, FakeSource()).start()
    finally:
        await first.close()


def test_request_without_agent(tmp_path: Path) -> None:
    with pytest.raises(AgentUnavailable, match="no agent answers"):
        request(tmp_path / "kubespan.sock", "GET", "/v1/status")


@pytest.mark.anyio
async def test_agent_status_over_the_socket(tmp_path: Path) -> None:
    service = FakeDiscovery()
    raw, key2 = peer_record(2)
    service.put(CLUSTER_ID, raw)
    agent, host = make_agent(tmp_path, [service])
    agent._socket_path = tmp_path / "state" / "kubespan.sock"
    task = asyncio.create_task(agent.run())
    try:
        while key2 not in host.peers or not agent.sessions[0].connected:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        status = await asyncio.to_thread(get, agent._socket_path, "GET", "/v1/status")
        assert isinstance(status, dict)
        assert agent.identity is not None
        assert status["self"]["node_id"] == agent.identity.node_id
        assert status["self"]["public_key"] == agent.identity.public_key
        assert status["self"]["address"] == str(agent.address)
        [peer] = status["peers"]
        assert peer["label"] == "peer2"
        assert peer["public_key"] == key2
        assert peer["endpoint"] == "10.99.0.22:51820"
        assert peer["allowed_ips"][0] == "10.99.0.22/32"
        assert {m["nodename"] for m in status["members"]} == {"n1", "peer2"}
        [session] = status["sessions"]
        assert session["connected"] is True
        assert session["endpoint"] == service.url
        assert session["undecryptable"] == 0
        # Leave over the socket answers first, then the agent stops.
        result = await asyncio.to_thread(get, agent._socket_path, "POST", "/v1/leave")
        assert isinstance(result, dict) and result["deleted"] == [service.url]
        await asyncio.wait_for(task, 5)
    finally:
        agent.stop()
        await task
    assert service.deletes
    assert not agent._socket_path.exists()


@pytest.mark.anyio
async def test_second_agent_on_the_same_state_dir_fails_before_touching_the_link(
    tmp_path: Path,
) -> None:
    service = FakeDiscovery()
    first, _ = make_agent(tmp_path, [service])
    first._socket_path = tmp_path / "state" / "kubespan.sock"
    task = asyncio.create_task(first.run())
    try:
        while first.passes == 0:
            await asyncio.sleep(0.01)
        second, device = make_agent(tmp_path, [service])
        second._socket_path = first._socket_path
        with pytest.raises(StatusError, match="another kubespan agent is running"):
            await second.run()
        assert device.calls == [], "it must not run a single command"
    finally:
        first.stop()
        await asyncio.wait_for(task, 10)
