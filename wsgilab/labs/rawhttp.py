"""HTTP/1.1 as bytes on a socket: for requests an HTTP library refuses to send.

The failure labs (and the tests) need to send what no well-behaved client
would: a header full of quotes and escape bytes, a bare LF, a body larger
than announced. ``exchange`` writes the bytes as given and reads whatever
comes back until the server closes; ``Response`` picks the status line and
headers out of it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field


@dataclass
class Response:
    """A raw HTTP response: its status and headers, and the bytes as received."""

    raw: bytes
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: bytes) -> Response:
        """Parse the status line and headers; a reply that is not HTTP keeps status None."""
        head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[0].startswith("HTTP/") and parts[1].isdigit() else None
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return cls(raw, status, headers)

    def header(self, name: str) -> str | None:
        """One response header (case-insensitive), or None."""
        return self.headers.get(name.lower())

    @property
    def body(self) -> bytes:
        """The bytes after the headers, as received (b"" where no headers ended)."""
        return self.raw.partition(b"\r\n\r\n")[2]


def exchange(port: int, data: bytes, host: str = "127.0.0.1", timeout: float = 10.0,
             half_close: bool = False) -> Response:
    """Send ``data`` as it is and read until the server closes the connection.

    The request should say ``Connection: close``. If the server answers and
    closes before reading everything (nginx refusing a body it will not
    take), what it sent is still returned. ``half_close`` is for such a
    refusal: it shuts the sending side once ``data`` is sent (a client that
    has sent all it will send), and reads only until the response's
    Content-Length is in. nginx discards the rest of a refused body before
    it closes, and now and then waits out its ``lingering_timeout`` (5 s)
    for bytes that will never come even so (docs/findings.md).
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and stopped reading; its answer is still there
        return read_until_closed(sock, whole_response_ends_it=half_close)


def read_until_closed(sock: socket.socket, whole_response_ends_it: bool = False) -> Response:
    """Read what the server sends until it closes the connection, then close ``sock``: the response.

    ``whole_response_ends_it``: stop as soon as the headers and the body their Content-Length announces are in.
    """
    pieces = []
    with sock:
        try:
            while piece := sock.recv(65536):
                pieces.append(piece)
                if whole_response_ends_it and _is_whole(b"".join(pieces)):
                    break
        except ConnectionResetError:
            pass
    return Response.parse(b"".join(pieces))


def _is_whole(raw: bytes) -> bool:
    """Whether ``raw`` holds a response's headers and all the body its Content-Length announces."""
    head, ended, body = raw.partition(b"\r\n\r\n")
    length = Response.parse(head).header("Content-Length") if ended else None
    return length is not None and length.isdigit() and len(body) >= int(length)


def request_bytes(method: str, target: str, headers: list[tuple[str, str]] | None = None,
                  host: str = "localhost", body: bytes = b"", extra: bytes = b"") -> bytes:
    """A request as bytes, with ``Connection: close``; ``extra`` goes in raw after the other headers."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n").encode("latin-1") + extra + b"\r\n" + body
