"""What a service believes from the hop in front of it: only the gateway is believed.

The gateway proves itself with the shared `edge_secret` in `X-Krika-Edge` on every request it
proxies (it strips any `X-Krika-*` header a client sends), and passes the client's address it
resolved in `X-Krika-Client-IP`. A request without the secret - a direct caller on the
internal network, a peer on the same host - cannot choose its client IP (login throttling is
per IP), request id or trace: `X-Forwarded-For` is never read by a service.
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import Request
from starlette.types import Scope

from krika_common.telemetry import TrustCheck

EDGE_HEADER = b"x-krika-edge"
CLIENT_IP_HEADER = b"x-krika-client-ip"


def edge_check(secret: str) -> TrustCheck:
    """True for a request that carries the gateway's secret (compared in constant time)."""
    expected = secret.encode()

    def from_gateway(scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == EDGE_HEADER:
                return hmac.compare_digest(value, expected)
        return False

    return from_gateway


def client_ip(request: Request) -> str:
    """The client's IP: as the gateway resolved it, else the TCP peer."""
    if request.scope.get("state", {}).get("trusted_hop"):
        for name, value in request.scope["headers"]:
            if name == CLIENT_IP_HEADER:
                try:
                    return str(ipaddress.ip_address(value.decode("latin-1").strip()))
                except ValueError:
                    break
    return request.client.host if request.client else "unknown"
