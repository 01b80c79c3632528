"""A webhook receiver for the tests: records every POST it gets (exact body bytes, headers,
time) and answers the statuses it is told to, in order (200 once they run out)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    at: float

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    url: str = ""
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hooks/paystack")
        async def hook(request: Request) -> Response:
            self.received.append(
                Received(await request.body(), dict(request.headers), time.monotonic())
            )
            status = self.statuses.pop(0) if self.statuses else 200
            return Response(status_code=status)

        return app

    def events(self, reference: str, event: str | None = None) -> list[Received]:
        """What arrived about `reference` (and of `event`), in arrival order."""
        return [
            r
            for r in self.received
            if _reference(r.event) == reference and (event is None or r.event["event"] == event)
        ]


def _reference(event: dict[str, Any]) -> str | None:
    data = event.get("data", {})
    found = data.get("reference") or data.get("transaction_reference")
    return None if found is None else str(found)
