"""A WebSocket client for benchmarks that costs next to nothing: frames in, sizes out.

Benchmarks measure the server; the SDK's client parses and validates every
message on the same cores, so where the client's own cost would blur the
figure (a 1 GiB resources/read, a thousand sessions at once), this one is used
instead. It speaks just enough RFC 6455 for emcp's `/mcp/ws`.
"""

from __future__ import annotations

import base64
import os

import orjson
import trio


def ws_frame(text: bytes) -> bytes:
    """A masked client text frame (RFC 6455); a zero mask key leaves the payload as it is."""
    n = len(text)
    size = bytes([0x80 | n]) if n < 126 else b"\xfe" + n.to_bytes(2) if n < 1 << 16 else b"\xff" + n.to_bytes(8)
    return b"\x81" + size + b"\0\0\0\0" + text


class RawWebSocket:
    """The least a WebSocket client can do: send text frames, and count received ones without decoding them.

    So the client costs no more than the baseline's reader, and the figure is
    the server's. Assumes what emcp sends: unfragmented, unmasked frames.
    """

    def __init__(self, stream: trio.SocketStream, buffered: bytes) -> None:
        self._stream = stream
        self._buffer = bytearray(buffered)

    @classmethod
    async def connect(cls, host: str, port: int) -> RawWebSocket:
        stream = await trio.open_tcp_stream(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send_all(
            f"GET /mcp/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mcp\r\n\r\n".encode()
        )
        seen = b""
        while b"\r\n\r\n" not in seen:
            seen += await stream.receive_some()
        head, _, rest = seen.partition(b"\r\n\r\n")
        assert b" 101 " in head.split(b"\r\n")[0], head
        return cls(stream, rest)

    async def initialize(self) -> None:
        """The MCP handshake (protocol 2025-11-25)."""
        init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
        await self.send({"id": 0, "method": "initialize", "params": init})
        assert b'"result"' in (await self.receive())[1]
        await self.send({"method": "notifications/initialized"})

    async def send(self, message: dict) -> None:
        await self._stream.send_all(ws_frame(orjson.dumps({"jsonrpc": "2.0", **message})))

    async def _fill(self, n: int) -> None:
        while len(self._buffer) < n:
            self._buffer += await self._stream.receive_some(1 << 20)

    async def receive(self, keep: int | None = None) -> tuple[int, bytes]:
        """The next message's size and its first `keep` bytes (all of it when None); pings are answered."""
        while True:
            await self._fill(2)
            opcode, size, start = self._buffer[0], self._buffer[1] & 0x7F, 2
            if size >= 126:
                width = 2 if size == 126 else 8
                await self._fill(2 + width)
                size, start = int.from_bytes(self._buffer[2 : 2 + width]), 2 + width
            wanted = size if keep is None or opcode != 0x81 else min(keep, size)
            await self._fill(start + wanted)
            head = bytes(self._buffer[start : start + wanted])
            del self._buffer[:start]
            left = size
            while left > len(self._buffer):  # skip the rest as it arrives, keeping nothing
                left -= len(self._buffer)
                self._buffer = bytearray(await self._stream.receive_some(1 << 20))
            del self._buffer[:left]
            if opcode == 0x89:  # ping: pong with the same payload
                await self._stream.send_all(b"\x8a" + ws_frame(head)[1:])
                continue
            assert opcode == 0x81, f"one unfragmented text frame per message, not opcode {opcode:#x}"
            return size, head

    async def aclose(self) -> None:
        await self._stream.aclose()
