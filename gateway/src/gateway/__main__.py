"""`python -m gateway`: uvicorn with the options the gateway expects."""

from __future__ import annotations

import os

import uvicorn


def main() -> None:
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=os.environ.get("GATEWAY_HOST", "127.0.0.1"),
        port=int(os.environ.get("GATEWAY_PORT", "8000")),
        # The gateway decides itself which peers may set X-Forwarded-For (trusted_proxies).
        proxy_headers=False,
        server_header=False,
        access_log=False,
    )


if __name__ == "__main__":
    main()
