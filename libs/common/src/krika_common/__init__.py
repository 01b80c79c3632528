"""Krika's shared infrastructure: settings, db, events, auth, telemetry, errors, testing."""

# Every table of every service gets stable constraint names; set before any table is declared.
import krika_common.db  # noqa: F401
