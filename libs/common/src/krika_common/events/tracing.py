"""W3C `traceparent` across the outbox and the bus, so a trace runs producer → outbox → consumer.

Without an OTLP endpoint no spans are recorded, but the trace id still travels (taken from the
request's `traceparent` that telemetry's middleware logged) and consumers log it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from krika_common.telemetry import (
    new_traceparent,
    request_id_var,
    trace_id_from_traceparent,
    trace_id_var,
    tracing_enabled,
)

TRACEPARENT = "traceparent"


def current_traceparent() -> str | None:
    """The traceparent of the current span, else one continuing the logged request's trace id."""
    from opentelemetry import trace
    from opentelemetry.propagate import inject

    if trace.get_current_span().get_span_context().is_valid:
        carrier: dict[str, str] = {}
        inject(carrier)
        if carrier.get(TRACEPARENT):
            return carrier[TRACEPARENT]
    trace_id = trace_id_var.get()
    if trace_id is None:
        return None
    # No span of ours exists: mint a parent id so the trace id (what logs join on) carries on.
    return new_traceparent(trace_id)


def _header_str(headers: Mapping[str, Any], name: str) -> str | None:
    value = headers.get(name)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value if isinstance(value, str) else None


@contextlib.contextmanager
def producer_span(name: str, headers: dict[str, Any]) -> Iterator[None]:
    """When tracing, a PRODUCER span under the stored traceparent; `headers` then carry it."""
    if not tracing_enabled():
        yield
        return
    from opentelemetry import trace
    from opentelemetry.propagate import extract, inject

    parent = extract({TRACEPARENT: _header_str(headers, TRACEPARENT) or ""})
    tracer = trace.get_tracer("krika_common.events")
    with tracer.start_as_current_span(name, context=parent, kind=trace.SpanKind.PRODUCER):
        carrier: dict[str, str] = {}
        inject(carrier)
        if carrier.get(TRACEPARENT):
            headers[TRACEPARENT] = carrier[TRACEPARENT]
        yield


@contextlib.contextmanager
def consumer_context(
    name: str, headers: Mapping[str, Any], correlation_id: str | None
) -> Iterator[None]:
    """Logs of a handler carry the message's trace id and correlation id; a CONSUMER span."""
    traceparent = _header_str(headers, TRACEPARENT)
    trace_token = trace_id_var.set(trace_id_from_traceparent(traceparent))
    request_token = request_id_var.set(correlation_id)
    try:
        if tracing_enabled():
            from opentelemetry import trace
            from opentelemetry.propagate import extract

            tracer = trace.get_tracer("krika_common.events")
            with tracer.start_as_current_span(
                name,
                context=extract({TRACEPARENT: traceparent or ""}),
                kind=trace.SpanKind.CONSUMER,
            ):
                yield
        else:
            yield
    finally:
        trace_id_var.reset(trace_token)
        request_id_var.reset(request_token)
