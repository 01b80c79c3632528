"""Routing, the exact public list, path checks, upstream failures and header rewriting."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable

import httpx
import pytest

from .conftest import GatewayClient, StartGateway
from .upstreams import Upstreams


async def raw_status(client: httpx.AsyncClient, method: str, path: str) -> int:
    """Send a request line byte for byte (httpx would normalise `..` away)."""
    url = client.base_url
    assert url.host
    assert url.port
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: {url.host}\r\nContent-Length: 2\r\n"
            "Connection: close\r\n\r\n{}".encode()
        )
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
    return int(status_line.split()[1])


@pytest.mark.parametrize(
    ("method", "path", "service", "upstream_path"),
    [
        ("POST", "/api/v1/auth/register", "identity", "/auth/register"),
        ("POST", "/api/v1/auth/login", "identity", "/auth/login"),
        ("POST", "/api/v1/auth/refresh", "identity", "/auth/refresh"),
        ("POST", "/api/v1/auth/logout", "identity", "/auth/logout"),
        ("POST", "/api/v1/auth/verify-email", "identity", "/auth/verify-email"),
        ("POST", "/api/v1/auth/forgot-password", "identity", "/auth/forgot-password"),
        ("POST", "/api/v1/auth/reset-password", "identity", "/auth/reset-password"),
        ("GET", "/api/v1/catalog/categories", "catalog", "/catalog/categories"),
        ("GET", "/api/v1/catalog/categories/7", "catalog", "/catalog/categories/7"),
        ("GET", "/api/v1/catalog/services", "catalog", "/catalog/services"),
        (
            "GET",
            "/api/v1/catalog/services/abc-1/reviews",
            "catalog",
            "/catalog/services/abc-1/reviews",
        ),
        ("GET", "/api/v1/catalog/search", "catalog", "/catalog/search"),
        ("POST", "/api/v1/payments/webhooks/paystack", "echo", "/payments/webhooks/paystack"),
    ],
)
async def test_public_routes_pass_without_token(
    client: httpx.AsyncClient,
    upstreams: Upstreams,
    method: str,
    path: str,
    service: str,
    upstream_path: str,
) -> None:
    response = await client.request(method, path, json={}, headers={"X-User-Id": str(uuid.uuid4())})
    assert response.status_code == 200, response.text
    (hit,) = upstreams.hits
    assert (hit["service"], hit["method"], hit["path"]) == (service, method, upstream_path)
    assert "x-user-id" not in hit["headers"]  # spoofed, and no verified user to replace it


async def test_public_read_reaches_a_typed_route(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/catalog/services/42")
    assert response.status_code == 200
    assert response.json() == {"title": "42", "price": 1000}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/auth/login"),  # public only as POST
        ("POST", "/api/v1/catalog/services"),  # reads only
        ("DELETE", "/api/v1/catalog/services/1"),
        ("GET", "/api/v1/catalog/services/1/2/reviews"),  # {id} is one segment
        ("GET", "/api/v1/catalog/services/1/reviews/x"),
        ("GET", "/api/v1/catalog/servicesx"),
        ("GET", "/api/v1/catalog/search-admin"),
        ("GET", "/api/v1/catalog/search/"),
        ("POST", "/api/v1/auth/login/x"),
        ("POST", "/api/v1/payments/webhooks/paystack/replay"),
        ("GET", "/api/v1/users/me"),
        ("HEAD", "/api/v1/catalog/services"),
    ],
)
async def test_everything_else_needs_a_token(
    client: httpx.AsyncClient, upstreams: Upstreams, method: str, path: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 401
    assert upstreams.hits == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/auth/login/../../users/me",
        "/api/v1/auth/login/%2e%2e/%2e%2e/users/me",
        "/api/v1/auth/login/%2E%2E/%2E%2E/users/me",
        "/api/v1/auth/login/./../users/me",
        "/api/v1/catalog/services/1%2F..%2F..%2Fadmin/reviews",
        "/api/v1/catalog/services/x%2fy/reviews",
        "/api/v1/catalog/services/%5c/reviews",
        "/api/v1/catalog/services//reviews",
        # These would match a public template ({id} = "..") if not refused.
        "/api/v1/catalog/services/../reviews",
        "/api/v1/catalog/categories/..",
        "/api/v1/catalog/categories/%2e%2E",
        "/api/v1//auth/login",
        "/api/v1/auth\\login",
        "/api/v1/auth/login%00",
    ],
)
async def test_ambiguous_paths_are_refused(
    client: httpx.AsyncClient, upstreams: Upstreams, path: str
) -> None:
    method = "GET" if "catalog" in path else "POST"
    assert await raw_status(client, method, path) == 400
    assert upstreams.hits == []


async def test_traversal_from_public_path_with_token_still_refused(
    client: httpx.AsyncClient, upstreams: Upstreams
) -> None:
    # Refused as a shape, not as an auth failure: the upstream must never resolve it.
    assert await raw_status(client, "GET", "/api/v1/orders/1/../2") == 400
    assert upstreams.hits == []


async def test_percent_encoding_is_forwarded_untouched(
    client: httpx.AsyncClient, upstreams: Upstreams, mint_token: Callable[..., str]
) -> None:
    response = await client.get(
        "/api/v1/orders/caf%C3%A9%20x",
        headers={"Authorization": f"Bearer {mint_token()}"},
    )
    assert response.status_code == 200
    assert response.json()["raw_path"] == "/orders/caf%C3%A9%20x"


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/nope/x", "/api/v1/", "/api/v2/orders"])
async def test_unknown_prefix_is_404_json(
    client: httpx.AsyncClient, upstreams: Upstreams, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert upstreams.hits == []


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/v1/users/me", "identity"),
        ("/api/v1/kyc/documents", "identity"),
        ("/api/v1/orders", "echo"),
        ("/api/v1/payments/checkout", "echo"),
        ("/api/v1/wallet/balance", "echo"),
        ("/api/v1/ledger/trial-balance", "echo"),
        ("/api/v1/chat/conversations", "echo"),
    ],
)
async def test_groups_route_to_their_service(
    client: httpx.AsyncClient,
    upstreams: Upstreams,
    mint_token: Callable[..., str],
    path: str,
    service: str,
) -> None:
    response = await client.get(path, headers={"Authorization": f"Bearer {mint_token()}"})
    assert response.status_code == 200
    (hit,) = upstreams.hits
    assert hit["service"] == service
    assert hit["path"] == path.removeprefix("/api/v1")


async def test_service_down_is_502(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    response = await client.get(
        "/api/v1/notifications", headers={"Authorization": f"Bearer {mint_token()}"}
    )
    assert response.status_code == 502
    body = response.json()
    assert body["error"] == "upstream_unavailable"
    assert "notify" in body["detail"]


async def test_slow_service_is_504(
    start_gateway: StartGateway, mint_token: Callable[..., str]
) -> None:
    async with start_gateway(upstream_timeout=0.3) as client:
        response = await client.get(
            "/api/v1/orders/slow", headers={"Authorization": f"Bearer {mint_token()}"}
        )
    assert response.status_code == 504
    assert response.json()["error"] == "upstream_timeout"


async def test_a_trusted_proxys_request_id_and_traceparent_are_forwarded(
    start_gateway: StartGateway, mint_token: Callable[..., str]
) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with start_gateway(trusted_proxies=["127.0.0.1"]) as client:
        response = await client.get(
            "/api/v1/orders",
            headers={
                "Authorization": f"Bearer {mint_token()}",
                "X-Request-ID": "req-123.abc",
                "traceparent": traceparent,
            },
        )
    seen = response.json()["headers"]
    assert seen["x-request-id"] == ["req-123.abc"]
    assert seen["traceparent"] == [traceparent]
    assert response.headers.get_list("x-request-id") == ["req-123.abc"]


async def test_a_clients_request_id_and_traceparent_are_not_believed(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    chosen = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = await client.get(
        "/api/v1/orders",
        headers={
            "Authorization": f"Bearer {mint_token()}",
            "X-Request-ID": "req-123.abc",
            "traceparent": chosen,
        },
    )
    seen = response.json()["headers"]
    (request_id,) = seen["x-request-id"]
    assert request_id != "req-123.abc"
    assert response.headers.get_list("x-request-id") == [request_id]  # once, not twice
    (traceparent,) = seen["traceparent"]
    assert "4bf92f3577b34da6a3ce929d0e0e4736" not in traceparent


async def test_request_id_and_traceparent_are_minted_when_missing_or_bad(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    response = await client.get(
        "/api/v1/orders",
        headers={
            "Authorization": f"Bearer {mint_token()}",
            "X-Request-ID": "bad id with spaces",
            "traceparent": "garbage",
        },
    )
    seen = response.json()["headers"]
    (request_id,) = seen["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert response.headers["x-request-id"] == request_id
    (traceparent,) = seen["traceparent"]
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", traceparent)


async def test_hop_by_hop_headers_are_stripped_both_ways(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    response = await client.get(
        "/api/v1/orders/hop-request",
        headers={
            "Authorization": f"Bearer {mint_token()}",
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "1",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "X-End-To-End": "kept",
        },
    )
    seen = response.json()["headers"]
    for hop in ("x-secret-hop", "keep-alive", "te", "proxy-authorization"):
        assert hop not in seen, hop
    assert seen["x-end-to-end"] == ["kept"]

    response = await client.get(
        "/api/v1/orders/hop", headers={"Authorization": f"Bearer {mint_token()}"}
    )
    assert response.status_code == 200
    assert response.headers["x-kept"] == "yes"
    for hop in ("keep-alive", "proxy-authenticate", "trailer"):
        assert hop not in response.headers, hop


async def test_forwarded_headers_use_the_socket_peer(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    response = await client.get(
        "/api/v1/orders",
        headers={
            "Authorization": f"Bearer {mint_token()}",
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example",
        },
    )
    seen = response.json()["headers"]
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == [client.base_url.netloc.decode()]


async def test_forwarded_headers_from_a_trusted_proxy_are_kept(
    start_gateway: StartGateway, mint_token: Callable[..., str]
) -> None:
    async with start_gateway(trusted_proxies=["127.0.0.0/8"]) as client:
        response = await client.get(
            "/api/v1/orders",
            headers={
                "Authorization": f"Bearer {mint_token()}",
                "X-Forwarded-For": "203.0.113.9",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "api.krika.example",
            },
        )
    seen = response.json()["headers"]
    assert seen["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["https"]
    assert seen["x-forwarded-host"] == ["api.krika.example"]


async def test_upstream_cookies_reach_the_client_but_never_another_request(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    response = await client.get(
        "/api/v1/orders/cookie", headers={"Authorization": f"Bearer {mint_token()}"}
    )
    assert "secret-of-user-a" in response.headers["set-cookie"]
    client.cookies.clear()
    response = await client.get(
        "/api/v1/orders", headers={"Authorization": f"Bearer {mint_token()}"}
    )
    assert "cookie" not in response.json()["headers"]


async def test_request_body_and_query_are_forwarded(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    body = b'{"service_id": "s1", "package": "basic"}'
    response = await client.post(
        "/api/v1/orders?x=1&y=%20",
        content=body,
        headers={
            "Authorization": f"Bearer {mint_token()}",
            "Content-Type": "application/json",
            "Idempotency-Key": "k-1",
        },
    )
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["query"] == "x=1&y=%20"
    assert seen["body_len"] == len(body)
    assert seen["headers"]["idempotency-key"] == ["k-1"]
    assert seen["headers"]["content-type"] == ["application/json"]


async def test_metrics_label_proxied_calls_by_route_group(
    client: GatewayClient, mint_token: Callable[..., str]
) -> None:
    await client.get("/api/v1/orders/123", headers={"Authorization": f"Bearer {mint_token()}"})
    metrics = (await client.get(f"{client.ops_url}/metrics")).text
    assert 'route="/api/v1/orders/*"' in metrics
    assert "/api/v1/orders/123" not in metrics


def test_with_tracing_on_upstreams_get_the_gateways_span(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from gateway import core

    incoming = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert core.outgoing_traceparent(incoming) == incoming  # tracing off: passed through
    monkeypatch.setattr(core, "tracing_enabled", lambda: True)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("gateway request") as span:
        context = span.get_span_context()
        outgoing = core.outgoing_traceparent(incoming).decode()
    assert outgoing.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
