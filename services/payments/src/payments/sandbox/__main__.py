"""`python -m payments.sandbox`: the sandbox on settings.host:port (PAYSTACK_SANDBOX_*)."""

from __future__ import annotations

import logging

import uvicorn

from krika_common.config import HttpLimits, redact_url
from krika_common.server import listen, uvicorn_options

from .app import create_app
from .config import SandboxSettings

log = logging.getLogger("payments.sandbox")


def main() -> None:
    settings = SandboxSettings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = uvicorn.Config(
        create_app(settings),
        **uvicorn_options(HttpLimits()),
        # A request held by a timeout fault must not hold a restart for its whole length.
        timeout_graceful_shutdown=2,
    )
    log.info(
        "paystack sandbox on http://%s:%d (database %s)",
        settings.host,
        settings.port,
        redact_url(settings.database_url),
    )
    uvicorn.Server(config).run(sockets=[listen(settings.host, settings.port)])


if __name__ == "__main__":
    main()
