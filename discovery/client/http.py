"""The discovery client over our HTTP API: JSON for calls, Server-Sent Events for watch."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from ipaddress import ip_address
from typing import Any
from urllib.parse import quote

import httpx

from discovery.client import (
    ClientError,
    Deleted,
    HelloReply,
    RawAffiliate,
    Snapshot,
    Updated,
    WatchEvent,
)
from discovery.client.signing import RequestSigner
from discovery.version import SERVER_VERSION
from membership.codec import decode_b64, encode_b64

# The server sends a keep-alive comment every 15 s (routes_watch.HEARTBEAT_SECONDS); three
# missed ones mean the connection is dead even if TCP has not noticed (NAT drop, half-open socket).
WATCH_READ_TIMEOUT = 45.0

_USER_AGENT = f"kubespan-discovery/{SERVER_VERSION}"


class HttpDiscoveryClient:
    """DiscoveryClient for http(s)://host:port; one connection pool, closed by `aclose`."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        signer: RequestSigner | None = None,
    ) -> None:
        """`transport` is for tests (httpx.MockTransport); the default speaks real HTTP.
        With `signer`, writes are signed (RFC 9421) as that node."""
        self.endpoint = url
        self._signer = signer
        self._timeout = httpx.Timeout(timeout)
        self._watch_timeout = httpx.Timeout(timeout, read=max(WATCH_READ_TIMEOUT, timeout))
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            timeout=self._timeout,
            headers={"User-Agent": _USER_AGENT},
            # A redirect here means a misconfigured endpoint; following it could silently
            # send cluster records somewhere else.
            follow_redirects=False,
            transport=transport,
        )

    async def hello(self, cluster_id: str, client_version: str) -> HelloReply:
        body = await self._call(
            "POST", "/v1/hello", json={"cluster_id": cluster_id, "client_version": client_version}
        )
        raw_ip, redirect = body.get("client_ip"), body.get("redirect")
        try:
            client_ip = ip_address(raw_ip) if raw_ip else None
        except ValueError as exc:
            raise ClientError(f"server sent a bad client IP {raw_ip!r}", retryable=True) from exc
        if not redirect:
            return HelloReply(client_ip=client_ip, redirect=None)
        redirect = str(redirect)
        # A bare "host:port" (the Talos form) keeps our scheme, so connect() can take it as is.
        if "://" not in redirect:
            redirect = f"{self.endpoint.split('://', 1)[0]}://{redirect}"
        return HelloReply(client_ip=client_ip, redirect=redirect)

    async def update(
        self,
        cluster_id: str,
        affiliate_id: str,
        *,
        data: bytes | None,
        endpoints: Sequence[bytes],
        ttl: timedelta,
    ) -> None:
        payload: dict[str, Any] = {
            "endpoints": [encode_b64(e) for e in endpoints],
            "ttl": ttl.total_seconds(),
        }
        if data is not None:
            payload["data"] = encode_b64(data)
        path = _affiliate_path(cluster_id, affiliate_id)
        if self._signer is None:
            await self._call("PUT", path, json=payload)
            return
        body = json.dumps(payload, separators=(",", ":")).encode()
        await self._call("PUT", path, content=body, sign=self._signer.http_put)
        self._signer.wrote(cluster_id, affiliate_id, data)

    async def delete(self, cluster_id: str, affiliate_id: str) -> None:
        path = _affiliate_path(cluster_id, affiliate_id)
        signer = self._signer
        if signer is None:
            await self._call("DELETE", path)
            return
        record = signer.last_written(cluster_id, affiliate_id)
        if record is None:
            # Not written by this process (`kubespan leave` after a restart): name the
            # record the service holds now. Only a copied delete must not outlive its record.
            current = [a for a in await self.list(cluster_id) if a.id == affiliate_id]
            record = current[0].data if current else b""
        await self._call("DELETE", path, sign=lambda wire_path, _: signer.delete(wire_path, record))

    async def revoke(self, cluster_id: str, node_key: bytes, signature: bytes) -> int:
        """Submit the cluster's revocation of `node_key`; returns the revision."""
        body = await self._call(
            "POST",
            f"{_cluster_path(cluster_id)}/revocations",
            json={"node_key": encode_b64(node_key), "signature": encode_b64(signature)},
        )
        return int(body["revision"])

    async def revocations(self, cluster_id: str) -> list[bytes]:
        """The node keys the cluster revoked."""
        body = await self._call("GET", f"{_cluster_path(cluster_id)}/revocations")
        try:
            return [decode_b64(k) for k in body["node_keys"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ClientError(f"malformed revocation list: {exc}", retryable=True) from exc

    async def list(self, cluster_id: str) -> list[RawAffiliate]:
        body = await self._call("GET", f"{_cluster_path(cluster_id)}/affiliates")
        try:
            return [_affiliate(a) for a in body["affiliates"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ClientError(f"malformed affiliate list: {exc}", retryable=True) from exc

    async def watch(
        self, cluster_id: str, *, since: int | None = None
    ) -> AsyncGenerator[WatchEvent, None]:
        if self._http.is_closed:
            raise ClientError("client is closed", retryable=False)
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if since is not None:
            headers["Last-Event-ID"] = str(since)
        url = f"{_cluster_path(cluster_id)}/watch"
        try:
            async with self._http.stream(
                "GET", url, headers=headers, timeout=self._watch_timeout
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _status_error(response)
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith("text/event-stream"):
                    raise ClientError(
                        f"watch answered with {content_type or 'no content type'}, "
                        "not an event stream",
                        retryable=True,
                    )
                async for frame in _frames(response):
                    event = _watch_event(frame)
                    if event is not None:
                        yield event
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc
        # The server never ends a watch on its own while it runs; a clean end is a restart
        # or a proxy cutting long requests, so the caller reconnects like after any break.
        raise ClientError("watch stream ended", retryable=True)

    async def __aenter__(self) -> HttpDiscoveryClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        sign: Callable[[str, bytes], dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        if self._http.is_closed:
            raise ClientError("client is closed", retryable=False)
        try:
            request = self._http.build_request(method, url, json=json, content=content)
            if content is not None:
                request.headers["Content-Type"] = "application/json"
            if sign is not None:
                # Sign the path exactly as it goes on the wire, after httpx's own encoding.
                raw_path = request.url.raw_path.split(b"?", 1)[0].decode("ascii")
                request.headers.update(sign(raw_path, content or b""))
            response = await self._http.send(request)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc
        if not response.is_success:
            raise _status_error(response)
        try:
            body = response.json()
        except ValueError as exc:
            raise ClientError(f"{method} {url}: response is not JSON", retryable=True) from exc
        if not isinstance(body, dict):
            raise ClientError(f"{method} {url}: response is not a JSON object", retryable=True)
        return body


@dataclass(frozen=True, slots=True)
class _Frame:
    id: str | None
    event: str
    data: str


async def _frames(response: httpx.Response) -> AsyncIterator[_Frame]:
    """SSE frames as the HTML spec dispatches them; comments (keep-alives) and retry: skipped."""
    last_id: str | None = None
    event = ""
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield _Frame(last_id, event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            # Per the spec the last id sticks to later frames that carry none.
            last_id = value
        # `retry:` is ignored: reconnect pacing is the caller's backoff, not the server's hint.


def _watch_event(frame: _Frame) -> WatchEvent | None:
    try:
        payload = json.loads(frame.data)
        revision = int(frame.id) if frame.id else None
        if frame.event == "snapshot":
            affiliates = tuple(_affiliate(a) for a in payload["affiliates"])
            if revision is None:
                revision = int(payload["revision"])
            return Snapshot(affiliates=affiliates, revision=revision)
        if frame.event == "update":
            return Updated(affiliate=_affiliate(payload), revision=revision)
        if frame.event == "delete":
            return Deleted(affiliate_id=str(payload["id"]), revision=revision)
    except (KeyError, TypeError, ValueError) as exc:
        raise ClientError(f"malformed {frame.event!r} watch event: {exc}", retryable=True) from exc
    return None  # an event type from a newer server: not ours to interpret


def _affiliate(raw: Any) -> RawAffiliate:
    return RawAffiliate(
        id=str(raw["id"]),
        data=_unb64(raw["data"]),
        endpoints=tuple(_unb64(e) for e in raw["endpoints"]),
    )


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise TypeError("blob is not a base64 string")
    try:
        return decode_b64(text)
    except ValueError as exc:
        raise ValueError(f"bad base64: {exc}") from exc


def _cluster_path(cluster_id: str) -> str:
    # Talos cluster ids are standard base64: '/' must not split the path, '+' and '=' must
    # survive, so every reserved character is escaped.
    return f"/v1/clusters/{quote(cluster_id, safe='')}"


def _affiliate_path(cluster_id: str, affiliate_id: str) -> str:
    return f"{_cluster_path(cluster_id)}/affiliates/{quote(affiliate_id, safe='')}"


def _transport_error(exc: httpx.HTTPError) -> ClientError:
    """Connection failures, timeouts and broken streams: always worth another try."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        what = "timed out"
    elif isinstance(exc, httpx.ConnectError):
        what = "unreachable"
    else:
        what = "connection broke"
    return ClientError(f"discovery service {what}: {detail}", retryable=True)


def _status_error(response: httpx.Response) -> ClientError:
    status = response.status_code
    message = _server_message(response) or response.reason_phrase or "error"
    # 429 is the rate limit and 408 a proxy's timeout: both pass. 5xx is the server's trouble
    # (503: storage down or still loading). Any other 4xx is about this request itself, and
    # sending it again cannot succeed.
    retryable = status in (408, 429) or status >= 500
    return ClientError(f"{message} (HTTP {status})", retryable=retryable)


def _server_message(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return None
