"""What goes where: the route groups of ARCHITECTURE §3, the realtime endpoint, the exact list
of public routes, and the path checks that keep a public-looking path from reaching a private
route.

Paths are judged on the raw (still percent-encoded) bytes: anything that could be read as a
different path by an upstream - dot segments, empty segments, encoded slashes, backslashes or
dots - is refused outright rather than normalised, so the gateway and the services can never
disagree about which route a request is for.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

API_PREFIX = b"/api/v1"

# Route group (first segment after /api/v1) -> service.
SERVICE_OF_GROUP: dict[str, str] = {
    "auth": "identity",
    "users": "identity",
    "kyc": "identity",
    "catalog": "catalog",
    "orders": "orders",
    "payments": "payments",
    "wallet": "ledger",
    "ledger": "ledger",
    "chat": "chat",
    "notifications": "notify",
}

# The realtime connection (Socket.IO over WebSocket, served by chat): the paths a client may
# use, chat's path, and the rate-limit group it is counted in.
REALTIME_PATHS = frozenset({"/socket.io/", "/socket.io"})
REALTIME_UPSTREAM_PATH = b"/socket.io/"
REALTIME_GROUP = "realtime"

# Reachable without a token. Exact method and path; `{id}` is exactly one path segment.
PUBLIC_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/verify-email"),
    ("POST", "/api/v1/auth/forgot-password"),
    ("POST", "/api/v1/auth/reset-password"),
    # Signed download links (krika_common.storage): the link itself is the credential.
    ("GET", "/api/v1/kyc/files/{folder}/{name}"),
    ("GET", "/api/v1/catalog/categories"),
    ("GET", "/api/v1/catalog/categories/{id}"),
    ("GET", "/api/v1/catalog/services"),
    ("GET", "/api/v1/catalog/services/{id}"),
    ("GET", "/api/v1/catalog/services/{id}/reviews"),
    ("GET", "/api/v1/catalog/search"),
    ("GET", "/api/v1/catalog/files/{folder}/{name}"),
    ("GET", "/api/v1/orders/files/{folder}/{name}"),
    ("GET", "/api/v1/chat/files/{folder}/{name}"),
    # One-click unsubscribe (RFC 8058): the signed link is the credential.
    ("GET", "/api/v1/notifications/unsubscribe"),
    ("POST", "/api/v1/notifications/unsubscribe"),
    ("POST", "/api/v1/payments/webhooks/paystack"),
)

_WILDCARD = None
_FORBIDDEN = (b"%2f", b"%5c", b"%2e", b"%00", b"\\")


class BadPath(ValueError):
    """The path has a shape that upstreams could resolve differently from the gateway."""


@dataclass(frozen=True, slots=True)
class RouteGroup:
    name: str
    service: str
    label: str  # the metric route label, e.g. /api/v1/auth/*


ROUTE_GROUPS: dict[bytes, RouteGroup] = {
    name.encode(): RouteGroup(name, service, f"/api/v1/{name}/*")
    for name, service in SERVICE_OF_GROUP.items()
}


def api_segments(raw_path: bytes) -> list[bytes]:
    """The percent-decoded segments after /api/v1/, or BadPath for an ambiguous path."""
    lowered = raw_path.lower()
    for forbidden in _FORBIDDEN:
        if forbidden in lowered:
            raise BadPath(raw_path)
    segments = raw_path[len(API_PREFIX) + 1 :].split(b"/")
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        if segment == b"":
            if i != last:  # `//` - only a trailing slash leaves an empty segment
                raise BadPath(raw_path)
        elif segment in (b".", b".."):
            raise BadPath(raw_path)
        elif b"%" in segment:
            segments[i] = unquote_to_bytes(segment)
    return segments


class PublicRoutes:
    """Exact (method, path template) matching on already-checked path segments."""

    def __init__(self, routes: tuple[tuple[str, str], ...] = PUBLIC_ROUTES) -> None:
        self._templates: dict[tuple[str, int], list[tuple[bytes | None, ...]]] = {}
        for method, path in routes:
            if not path.startswith("/api/v1/"):
                raise ValueError(f"public route outside /api/v1: {path}")
            template = tuple(
                _WILDCARD if s.startswith("{") and s.endswith("}") else s.encode()
                for s in path[len("/api/v1/") :].split("/")
            )
            self._templates.setdefault((method, len(template)), []).append(template)

    def allows(self, method: str, segments: list[bytes]) -> bool:
        for template in self._templates.get((method, len(segments)), ()):
            for want, got in zip(template, segments, strict=True):
                if want is _WILDCARD:
                    if got == b"":  # `{id}` is one non-empty segment
                        break
                elif want != got:
                    break
            else:
                return True
        return False

    def allows_template(self, method: str, path: str) -> bool:
        """For OpenAPI paths such as /api/v1/catalog/services/{service_id}."""
        segments = [s.encode() for s in path[len("/api/v1/") :].split("/")]
        return self.allows(method.upper(), segments)
