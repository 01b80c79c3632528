"""The Paystack sandbox (`payments.sandbox`): a local emulation of Paystack's API, checkout
page and signed webhooks. `create_app` is its ASGI factory; `python -m payments.sandbox` runs
it; `payments.sandbox.testing` starts it as a process for tests."""

from .app import create_app
from .config import SandboxSettings

__all__ = ["SandboxSettings", "create_app"]
