"""The uwsgi binary protocol, as nginx's ``uwsgi_pass`` speaks it to uWSGI.

nginx does not forward an HTTP request to uWSGI: it sends one *packet* of
CGI-style variables (the future WSGI ``environ``) followed by the raw body, and
reads back a plain HTTP response. A packet is a 4-byte header (modifier1,
little-endian 16-bit size of the variables, modifier2) and then, for each
variable, a 16-bit length and the key, a 16-bit length and the value. The
16-bit size is why a uwsgi request's variables can never exceed 64 KiB, and
why uWSGI's ``buffer-size`` is the knob that decides how much fits.

This module lets the healthcheck, the labs and the tests talk to uWSGI the
way nginx does, without nginx. From a shell (in a container on an app's
network, say)::

    python -m wsgilab.container.uwsgi_protocol raw:3031 /raw/ [NAME=VALUE ...]

sends one GET with any extra variables and prints the response's status line.
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Mapping

#: modifier1 0 is "a WSGI/Python request" (uWSGI's default for the python plugin).
MODIFIER_WSGI = 0
MAX_VARS_SIZE = 0xFFFF


def encode_request(variables: Mapping[str, str], modifier1: int = MODIFIER_WSGI) -> bytes:
    """Return the packet header and variables block for ``variables``.

    Raises ValueError when they do not fit the protocol's 16-bit size field.
    """
    block = bytearray()
    for key, value in variables.items():
        for item in (key.encode("latin-1"), value.encode("latin-1")):
            if len(item) > MAX_VARS_SIZE:
                raise ValueError(f"{key} takes {len(item)} bytes; the protocol allows {MAX_VARS_SIZE}")
            block += struct.pack("<H", len(item)) + item
    if len(block) > MAX_VARS_SIZE:
        raise ValueError(f"uwsgi variables take {len(block)} bytes; the protocol allows {MAX_VARS_SIZE}")
    return struct.pack("<BHB", modifier1, len(block), 0) + bytes(block)


def request(
    address: tuple[str, int],
    method: str,
    path: str,
    script_name: str = "",
    host: str = "localhost",
    body: bytes = b"",
    timeout: float = 5.0,
    extra_variables: Mapping[str, str] | None = None,
) -> bytes:
    """Send one request over the uwsgi protocol and return the raw HTTP response bytes.

    ``path`` is the full path as nginx would send it (``$document_uri``);
    uWSGI's ``manage-script-name`` then splits off ``script_name``.
    ``extra_variables`` are added to the packet as they are (the exposure lab
    and its test send uWSGI's magic variables this way).
    """
    path_only, _, query = path.partition("?")
    variables = {
        "REQUEST_METHOD": method,
        "REQUEST_URI": path,
        "PATH_INFO": path_only,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": host,
        "SERVER_PORT": str(address[1]),
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": host,
        "CONTENT_LENGTH": str(len(body)) if body else "",
    }
    if script_name:
        variables["SCRIPT_NAME"] = script_name
    variables.update(extra_variables or {})
    with socket.create_connection(address, timeout=timeout) as conn:
        conn.sendall(encode_request(variables) + body)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def main(argv: list[str]) -> int:
    """``python -m wsgilab.container.uwsgi_protocol HOST:PORT PATH [NAME=VALUE ...]``: print the status line."""
    if len(argv) < 2 or ":" not in argv[0] or not all("=" in extra for extra in argv[2:]):
        print("usage: python -m wsgilab.container.uwsgi_protocol HOST:PORT PATH [NAME=VALUE ...]", file=sys.stderr)
        return 64
    host, _, port = argv[0].rpartition(":")
    extra = dict(item.split("=", 1) for item in argv[2:])
    try:
        raw = request((host, int(port)), "GET", argv[1], timeout=10, extra_variables=extra)
    except OSError as error:
        print(f"uwsgi_protocol: cannot reach {argv[0]}: {error}", file=sys.stderr)
        return 1
    print(raw.split(b"\r\n", 1)[0].decode("latin-1"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
