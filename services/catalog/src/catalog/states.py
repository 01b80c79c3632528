"""The service (gig) lifecycle: draft → published ⇄ paused, and archived from any of them.

Pure: no I/O. `publish` from paused resumes; archived is final.
"""

from __future__ import annotations

from catalog.models import ServiceStatus

TRANSITIONS: dict[str, dict[ServiceStatus, ServiceStatus]] = {
    "publish": {
        ServiceStatus.draft: ServiceStatus.published,
        ServiceStatus.paused: ServiceStatus.published,
    },
    "pause": {ServiceStatus.published: ServiceStatus.paused},
    "archive": {
        ServiceStatus.draft: ServiceStatus.archived,
        ServiceStatus.published: ServiceStatus.archived,
        ServiceStatus.paused: ServiceStatus.archived,
    },
}


def next_status(current: str, action: str) -> ServiceStatus | None:
    """The status `action` leads to from `current`, or None when it is not allowed."""
    return TRANSITIONS[action].get(ServiceStatus(current))


def editable(status: str) -> bool:
    """Details, packages and media can change until the service is archived."""
    return status != ServiceStatus.archived
