"""What the lifespan puts on `app.state`, typed for the routes."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from fastapi import Request

if TYPE_CHECKING:
    from .background import Background
    from .config import SandboxSettings
    from .store import Store


def settings_of(request: Request) -> SandboxSettings:
    return cast("SandboxSettings", request.app.state.settings)


def store_of(request: Request) -> Store:
    return cast("Store", request.app.state.store)


def background_of(request: Request) -> Background:
    return cast("Background", request.app.state.background)
