"""The proxy hot path for `/api/v1/<group>/...` (dispatched by gateway.app's middleware).

It checks the path, admits the request (gateway.core: one Authorization header, the access
token unless the route is on the exact public list, the access mark, the rate limits),
rewrites the headers - the upstream gets the verified token only, the gateway's secret and
the client's IP - and streams the request to the upstream and the response back. No FastAPI
routing or dependency injection runs per proxied request; everything is in `handle_http`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from starlette.types import Receive, Scope, Send

from gateway.core import (
    Gateway,
    PathNotAllowed,
    UpstreamDown,
    UpstreamTooSlow,
    outgoing_traceparent,
)
from gateway.routes import ROUTE_GROUPS, BadPath, api_segments
from gateway.upstream import Body, UpstreamError, UpstreamResponse, UpstreamTimeout
from krika_common.errors import ServiceError
from krika_common.server import send_error
from krika_common.telemetry import user_id_var

log = logging.getLogger("gateway.proxy")

# Never forwarded in either direction (RFC 9110 §7.6.1 plus the usual non-standard ones).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Request headers the gateway sets itself (a client's copy is never believed).
_REPLACED = frozenset(
    {
        b"host",
        b"x-user-id",
        b"x-user-roles",
        b"x-request-id",
        b"traceparent",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"forwarded",
        b"x-real-ip",
        # uvicorn answers `Expect: 100-continue` itself when we read the body.
        b"expect",
    }
)
_REQUEST_DROP = HOP_BY_HOP | _REPLACED
# uvicorn adds its own; the request id is the gateway's (the upstream echoes the same one).
_RESPONSE_DROP = HOP_BY_HOP | {b"server", b"date", b"x-request-id"}
_SMALL_BODY = 64 * 1024


class ClientGone(Exception):
    """The client disconnected while its request body was being forwarded."""


def error_headers(exc: ServiceError) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]


async def handle_http(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    raw_path = raw_path.partition(b"?")[0]
    try:
        segments = api_segments(raw_path)
    except BadPath:
        await send_error(send, 400, PathNotAllowed.code, "Path not allowed")
        return
    group = ROUTE_GROUPS.get(segments[0])
    if group is None:
        await send_error(send, 404, "not_found", "No such API")
        return
    scope["krika.route"] = group.label

    # One pass over the request headers: keep what is forwarded, note what we need.
    forward: list[tuple[bytes, bytes]] = []
    authorizations: list[bytes] = []
    host = xff = xfp = xfh = traceparent = connection = None
    content_length: bytes | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name in _REQUEST_DROP:
            if name == b"host":
                host = value
            elif name == b"x-forwarded-for":
                xff = value if xff is None else xff + b", " + value
            elif name == b"x-forwarded-proto":
                xfp = value
            elif name == b"x-forwarded-host":
                xfh = value
            elif name == b"traceparent":
                traceparent = value
            elif name == b"connection":
                connection = value
            elif name == b"transfer-encoding":
                chunked = True
            continue
        if name.startswith(b"x-krika-"):
            continue
        if name == b"authorization":
            authorizations.append(value)  # forwarded below, once admitted
            continue
        if name == b"content-length":
            content_length = value
        forward.append((name, value))
    if connection is not None:
        listed = {t.strip().lower() for t in connection.split(b",")} - {b"close", b"keep-alive"}
        if listed:
            forward = [(n, v) for n, v in forward if n not in listed]
    if chunked and content_length is not None:
        # Both framings (a smuggling attempt): the server decoded the chunked body, so its
        # Content-Length must not reach the upstream.
        content_length = None
        forward = [(n, v) for n, v in forward if n != b"content-length"]

    method: str = scope["method"]
    try:
        admission = await gw.admit(
            scope,
            group.name,
            authorizations,
            public=gw.public.allows(method, segments),
            xff=xff,
            proto=xfp,
            host=host,
            fwd_host=xfh,
        )
    except ServiceError as exc:
        await send_error(send, exc.status, exc.code, exc.detail, error_headers(exc))
        return
    if authorizations:
        forward.append((b"authorization", authorizations[0]))  # the one that was checked
    if (principal := admission.principal) is not None:
        user_id = str(principal.id)
        user_id_var.set(user_id)
        forward.append((b"x-user-id", user_id.encode()))
        forward.append((b"x-user-roles", ",".join(sorted(principal.roles)).encode()))
    forward.extend(admission.hop_headers)
    forward.append((b"x-request-id", scope["state"]["request_id"].encode()))
    # A client's own trace is continued only from a trusted proxy (telemetry decided).
    trusted = scope["state"].get("trusted_hop", False)
    forward.append((b"traceparent", outgoing_traceparent(traceparent if trusted else None)))

    target = raw_path[len(b"/api/v1") :]
    query: bytes = scope.get("query_string", b"")
    if query:
        target += b"?" + query

    content: Body = None
    if chunked or (content_length is not None and content_length != b"0"):
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        first: bytes = message.get("body", b"")
        content = _stream_body(first, receive) if message.get("more_body") else first

    service = group.service
    try:
        response = await gw.upstream.send(method, gw.origin(service), target, forward, content)
    except ClientGone:
        return
    except UpstreamError as exc:
        if _client_left(exc):  # the client hung up mid-upload; nobody to answer
            return
        await _upstream_failed(send, service, exc)
        return
    try:
        await _relay_response(response, send, service, gw.origin(service).encode())
    finally:
        await response.aclose()


def _client_left(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):  # the HTTP client wraps what our body iterator raised
        if seen is None:
            return False
        if isinstance(seen, ClientGone) or any(isinstance(a, ClientGone) for a in seen.args):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _upstream_failed(send: Send, service: str, exc: UpstreamError) -> None:
    if isinstance(exc, UpstreamTimeout):
        log.warning("upstream %s timed out: %s", service, exc)
        detail = f"The {service} service did not answer in time"
        await send_error(send, UpstreamTooSlow.status, UpstreamTooSlow.code, detail)
    else:
        log.warning("upstream %s unavailable: %s", service, exc)
        detail = f"The {service} service is unavailable"
        await send_error(send, UpstreamDown.status, UpstreamDown.code, detail)


async def _stream_body(first: bytes, receive: Receive) -> AsyncIterator[bytes]:
    if first:
        yield first
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        body: bytes = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body"):
            return


async def _relay_response(
    response: UpstreamResponse, send: Send, service: str, origin: bytes
) -> None:
    headers: list[tuple[bytes, bytes]] = []
    length = -1
    for name, value in response.headers:
        name = name.lower()
        if name in _RESPONSE_DROP:
            continue
        if name == b"content-length":
            length = int(value)
        elif name == b"location" and value.startswith(origin):
            # Never show a client the service's internal address.
            value = b"/api/v1" + value[len(origin) :]
        headers.append((name, value))
    start = {"type": "http.response.start", "status": response.status, "headers": headers}
    if 0 <= length <= _SMALL_BODY:
        # Small and of known size: one body message instead of a streamed series.
        try:
            body = await response.read()
        except UpstreamError as exc:
            await _upstream_failed(send, service, exc)
            return
        await send(start)
        await send({"type": "http.response.body", "body": body})
        return
    await send(start)
    try:
        async for chunk in response.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except UpstreamError as exc:
        # Headers are out: all we can do is cut the response short, which the client sees.
        log.warning("upstream %s broke off its response: %s", service, exc)
        return
    await send({"type": "http.response.body", "body": b""})
