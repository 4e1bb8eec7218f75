"""A bare SSE reader over a trio socket, for tests that stop reading mid-stream.

httpx2's line iterators leave inner async generators unclosed when a test
stops early, which `filterwarnings = error` rightly fails; a raw socket has no
such state, and shows exactly what the server wrote.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import trio


class RawSse:
    def __init__(self, stream: trio.SocketStream, head: bytes, body: bytes) -> None:
        self.stream = stream
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines if h)}
        self.body = bytearray(body)

    async def read_until(self, needle: bytes) -> bytes:
        """Read until `needle` has arrived; return everything read so far."""
        while needle not in self.body:
            chunk = await self.stream.receive_some()
            if not chunk:
                raise EOFError(f"stream ended before {needle!r}: {bytes(self.body)!r}")
            self.body += chunk
        return bytes(self.body)


async def open_raw_sse(url: str) -> RawSse:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    request = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n\r\n"
    await stream.send_all(request.encode())
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = await stream.receive_some()
        if not chunk:
            raise EOFError(f"connection closed before the response head: {received!r}")
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return RawSse(stream, head, body)
