"""Krika API gateway: JWT check, routing, rate limits, WebSocket proxy, merged API docs."""
