"""Krika API gateway: JWT check, routing, rate limits, Socket.IO proxy, merged API docs."""
