"""Lab: websocket. nginx passes the upgrade on; an ASGI app takes it, each frame in its trace; a WSGI app cannot."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import uuid

from wsgilab.hoptrace.records import events_of, find_event
from wsgilab.labs.kit import Outcome, Report, Target, served_by

TITLE = "Websocket: nginx passes the upgrade on; on uvicorn the app takes it, under WSGI it can only refuse it"

EXPLANATION = """
The app server decides: nginx passes the upgrade on (a map in
nginx.conf); on uvicorn the raw app and Django answer 101 and echo each
message; under WSGI the app never gets the connection, and its /ws
answers 426 Upgrade Required.

A websocket starts as an HTTP GET that asks to switch protocols (Upgrade:
websocket, Connection: Upgrade, a Sec-WebSocket-Key); a server that agrees
answers 101, and from then on the connection carries frames both ways for
as long as either side wants. nginx passes the upgrade on only when told
to: nginx.conf maps a client's "Upgrade: websocket" to the Upgrade and
"Connection: upgrade" headers it sends the app (any other request gets
neither, and an empty Connection header, so its connection to the app may
be reused). On uvicorn the raw app's ASGI side accepts it (websocket.accept
is the 101) and sends back each message, and so does Django's, through a
consumer of the app's own (Django's ASGI handler takes HTTP only:
labsite/asgi.py routes the websocket around it); every frame is an event of
the trace, with its size, and the record ends when the client closes. A WSGI
app never gets the connection: PEP 3333 gives it an environ and takes back
a response, so each app's /ws can only refuse the upgrade, with 426
Upgrade Required and the setting that serves it. (A WSGI server may offer
its own way round: uWSGI's uwsgi.websocket_handshake, gunicorn's async
workers with a library, each outside the standard.) nginx closes a
websocket that stays idle for its proxy_read_timeout (NGINX_READ_TIMEOUT,
60 s); the lab's client sends its frames with no pause.
"""

OUTCOMES = (
    Outcome(
        failure="a websocket to a WSGI app",
        client_sees="426 Upgrade Required, from the app; on uvicorn, 101 and the messages echoed",
        statuses=("other",),
        hop="the app: a WSGI app is handed no connection to keep",
        gunicorn="none in WSGI: the app answers the upgrade as a plain GET",
        uwsgi="the same (uWSGI's own `uwsgi.websocket_handshake` is outside WSGI)",
        uvicorn="`ws` (wsproto) in uvicorn.conf.py; nginx's `proxy_read_timeout` for an idle one",
    ),
)

SERVERS = ("gunicorn", "uwsgi", "uvicorn")
#: How its page's second run put the apps with a websocket on their ASGI side.
ASGI_RUN = "DJANGO_SERVER=uvicorn RAW_SERVER=uvicorn docker compose up -d"
ASGI = ("uvicorn",)
MESSAGES = ("hello", "wsgi-lab", "x" * 100)
#: RFC 6455's constant, which the server hashes with the client's key to show it understood the handshake.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The response's status and headers (lower-case names), and the bytes read past them."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(4096)
        if not piece:
            break
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if len(lines[0].split(" ")) > 1 else 0
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return status, headers, rest


def _frame(opcode: int, payload: bytes) -> bytes:
    """One final frame from the client: clients must mask what they send (RFC 6455, 5.3)."""
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked  # payloads here are under 126 bytes


def _read_frame(sock: socket.socket, pending: bytearray) -> tuple[int, bytes]:
    """One frame from the server (unmasked): its opcode and payload."""
    def need(count: int) -> bytes:
        while len(pending) < count:
            piece = sock.recv(4096)
            if not piece:
                raise ConnectionError("the server closed the connection mid-frame")
            pending.extend(piece)
        taken = bytes(pending[:count])
        del pending[:count]
        return taken

    first, second = need(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", need(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", need(8))[0]
    return first & 0x0F, need(length)


#: The apps with a websocket: the raw app's ASGI side, and Django's through a consumer of its own (labsite/asgi.py).
WEBSOCKET_APPS = ("raw", "django")


def run(target: Target, report: Report) -> None:
    for app in WEBSOCKET_APPS:
        _one(target, report, app)


def _one(target: Target, report: Report, app: str) -> None:
    server = served_by(target, app)
    request_id = f"websocket-{uuid.uuid4().hex[:12]}"
    key = base64.b64encode(os.urandom(16)).decode()
    handshake = (f"GET /{app}/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nX-Request-ID: {request_id}\r\n\r\n")
    echoed: list[str] = []
    with socket.create_connection((target.host, target.port), timeout=10) as sock:
        sock.sendall(handshake.encode())
        status, headers, rest = _read_head(sock)
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        if status == 101:
            pending = bytearray(rest)
            for message in MESSAGES:
                sock.sendall(_frame(0x1, message.encode()))
                opcode, payload = _read_frame(sock, pending)
                echoed.append(payload.decode() if opcode == 0x1 else f"<opcode {opcode}>")
            sock.sendall(_frame(0x8, struct.pack("!H", 1000)))  # close, "normal closure"
            closing = _read_frame(sock, pending)[0]
        else:
            closing, body = None, rest
            while len(body) < int(headers.get("content-length") or 0) and (piece := sock.recv(4096)):
                body += piece
    what = f"/{app}/ws on {server}: a websocket handshake through nginx, then {len(MESSAGES)} messages"
    hop = "asgi" if server in ASGI else "wsgi"
    records = target.records_of([request_id], {"nginx", hop})[request_id]
    events = events_of(records)
    sent = find_event(events, "response_sent") or {}
    if server in ASGI:
        frames = [(e["type"], e.get("bytes")) for e in events if e["event"] in ("receive", "send")]
        expected_frames = [("websocket.connect", 0), ("websocket.accept", 0)] + [
            pair for message in MESSAGES for pair in (("websocket.receive", len(message)),
                                                       ("websocket.send", len(message)))] + [
            ("websocket.disconnect", 0)]
        report.check(what, "101 with the Sec-WebSocket-Accept the key asks for; each message echoed; the client's "
                     "close frame answered with one; the trace holds the ASGI messages in order, and only them: "
                     "connect, accept, a receive and a send of each message's size, disconnect; nginx logged 101",
                     f"{status}, accept {'right' if headers.get('sec-websocket-accept') == accept else 'wrong'}; "
                     f"echoed {echoed == list(MESSAGES)}; close answered {closing == 0x8}; "
                     f"{len(frames)} frames traced; nginx logged {sent.get('status')}",
                     status == 101 and headers.get("sec-websocket-accept") == accept and echoed == list(MESSAGES)
                     and closing == 0x8 and frames == expected_frames and sent.get("status") == 101, [request_id])
    else:
        called = find_event(events, "app_called") or {}
        named = f"{app.upper()}_SERVER=uvicorn".encode()
        report.check(what, f"426 Upgrade Required from the app itself, naming {named.decode()}: the WSGI call "
                     "ran (app_called) and answered; no 101",
                     f"{status}; the body names {named.decode()}: {named in body}; the app was called at "
                     f"{called.get('path_info')}; nginx logged {sent.get('status')}",
                     status == 426 and named in body and called.get("path_info") == "/ws"
                     and sent.get("status") == 426, [request_id])
