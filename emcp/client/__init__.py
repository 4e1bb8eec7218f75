"""Client transports for emcp's bindings the official `mcp` SDK does not ship (WebSocket)."""

from emcp.client.websocket import websocket_client

__all__ = ["websocket_client"]
