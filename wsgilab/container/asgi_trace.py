"""AsgiHopTrace: ASGI middleware that records one request's trip through ASGI, in the line HopTrace writes.

    application = AsgiHopTrace(app, service="raw", server="uvicorn")

The ASGI twin of ``wsgi_trace.HopTrace``. A WSGI request is one call that
returns an iterable; an ASGI request is one awaited call, ``app(scope,
receive, send)``, that talks to the server through two awaitables for as
long as it runs. So the trace *is* the messages: the call with a summary of
its scope, each ``receive()`` (a piece of the body, or the disconnect), each
``send()`` (``http.response.start``, then each ``http.response.body``), and
the coroutine's return. Each await's own time is kept (``waited_us``): a
``send()`` that takes long is a server holding the app while a slow client
reads, which no WSGI app can see.

It keeps its events in the same ``RequestTrace`` as HopTrace, under the same
context variable, so what the layers above add (Django's middleware events,
``traced_view``, each database query) lands in the same record, written as
one line with hop ``asgi`` when the app returns. A context variable is per
task in asyncio, and the server runs each request in a task of its own;
asgiref's ``sync_to_async``, which runs a sync view on a thread, copies the
context there, so ``mark()`` finds this request's trace on that thread too.

A ``websocket`` scope is traced the same way, for the connection's whole
life: its ``websocket.connect``, each message each way, its close. A
``lifespan`` scope passes through untouched, and so does a request whose
``traceparent`` says it is not sampled, as on the WSGI side.
"""

from __future__ import annotations

import sys
from threading import current_thread
from collections.abc import Awaitable, Callable, MutableMapping
from json.encoder import encode_basestring_ascii as _json_string
from time import time_ns
from typing import IO, Any

from wsgilab.container.log_lines import UNTRACED_REQUEST
from wsgilab.container.nginx_headers import request_id_of
from wsgilab.container.trace_writer import written_at_once
from wsgilab.container.wsgi_trace import MAX_PATH_LOGGED, RequestTrace, _current
from wsgilab.trace_context import is_sampled

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: How many receive() and body send() events a line lists; past them they are counted (``sends``).
MAX_MESSAGES_LISTED = 25

#: The request headers the trace reads, by their ASGI (lower-case, bytes) names, as their WSGI environ keys.
_HEADERS = {b"x-request-id": "HTTP_X_REQUEST_ID", b"traceparent": "HTTP_TRACEPARENT",
            b"x-request-start": "HTTP_X_REQUEST_START"}


def header_environ(scope: Scope) -> dict[str, str]:
    """The request headers the trace reads (``_HEADERS``), under their WSGI environ keys."""
    return {_HEADERS[name]: value.decode("latin-1") for name, value in scope.get("headers", ()) if name in _HEADERS}


class AsgiRequestTrace(RequestTrace):
    """A RequestTrace written under hop ``asgi``, closed by the app's return rather than by close()."""

    HOP = "asgi"
    __slots__ = ("receives", "sends")

    def __init__(self, headers: dict[str, str], identity: str, write_line: Callable[[str], None]) -> None:
        """``headers``: the request headers the trace reads, as ``header_environ`` gives them."""
        super().__init__(headers, identity, write_line)
        self.receives = self.sends = 0

    def finish_returned(self) -> None:
        """The app's coroutine returned: record it, and hand the trace on."""
        if self.input_bytes:
            self.tail += f',"input_bytes":{self.input_bytes}'
        if self.sends > MAX_MESSAGES_LISTED:
            self.tail += f',"sends":{self.sends}'
        self.parts.append(f'{{"event":"asgi_app_returned","ts_us":{time_ns() // 1000}}}')
        self.write()


class AsgiHopTrace:
    """Wrap an ASGI app so each HTTP request (and websocket) it serves leaves one trace line on stdout."""

    def __init__(self, app: Callable[..., Awaitable[None]], service: str, server: str, out: IO[str] | None = None,
                 replica: str = "-", response_header: Callable[[RequestTrace, int], tuple[str, str]] | None = None,
                 write_line: Callable[[str], None] | None = None) -> None:
        self.app, self.response_header = app, response_header
        self.identity = (f'"service":{_json_string(service)},"server":{_json_string(server)},'
                         f'"replica":{_json_string(replica)}')
        self.write_line = write_line or written_at_once(out or sys.stdout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = header_environ(scope)
        if not is_sampled(headers.get("HTTP_TRACEPARENT")):
            _current.set(None)  # not sampled: served bare, nothing recorded (wsgi_trace's HopTrace.not_sampled)
            UNTRACED_REQUEST.set(request_id_of(headers))
            await self.app(scope, receive, send)
            return
        trace = AsgiRequestTrace(headers, self.identity, self.write_line)
        _current.set(trace)
        UNTRACED_REQUEST.set(None)
        trace.parts.append(
            f'{{"event":"asgi_app_called","ts_us":{trace.started},"type":"{kind}",'
            f'"method":{_json_string(str(scope.get("method", "")))},'
            f'"root_path":{_json_string(str(scope.get("root_path", "")))},'
            f'"path":{_json_string(str(scope.get("path", ""))[:MAX_PATH_LOGGED])},'
            f'"http_version":{_json_string(str(scope.get("http_version", "")))},"scope_keys":{len(scope)},'
            f'"thread":{_json_string(current_thread().name)}}}')
        response_header = self.response_header

        async def traced_receive() -> Message:
            began = time_ns() // 1000
            message = await receive()
            trace.receives += 1
            size = _size(message)
            if message.get("type") == "http.request":
                trace.input_bytes += size
            if trace.receives <= MAX_MESSAGES_LISTED:
                more = (f',"more_body":{"true" if message.get("more_body") else "false"}'
                        if message.get("type") == "http.request" else "")
                trace.parts.append(
                    f'{{"event":"receive","ts_us":{began},"type":{_json_string(str(message.get("type")))},'
                    f'"bytes":{size}{more},"waited_us":{time_ns() // 1000 - began}}}')
            return message

        async def traced_send(message: Message) -> None:
            began = time_ns() // 1000
            kind = message.get("type")
            if kind == "http.response.start":
                status = message.get("status")
                trace.status_field = f',"status":{int(status) if isinstance(status, int) else "null"}'
                if response_header is not None:
                    name, value = response_header(trace, began)
                    message = {**message, "headers": [*message.get("headers", ()),
                                                      (name.lower().encode("latin-1"), value.encode("latin-1"))]}
                await send(message)
                trace.parts.append(f'{{"event":"response_start","ts_us":{began},"status":{_json_value(status)},'
                                   f'"headers":{len(message.get("headers", ()))},'
                                   f'"waited_us":{time_ns() // 1000 - began}}}')
                return
            await send(message)
            if kind == "websocket.accept":
                trace.status_field = ',"status":101'  # the handshake's answer, as nginx logs it
            trace.sends += 1
            size = _size(message)
            trace.body_bytes += size
            if trace.sends > MAX_MESSAGES_LISTED:
                return
            if kind == "http.response.body":
                trace.parts.append(
                    f'{{"event":"body_sent","ts_us":{began},"n":{trace.sends},"bytes":{size},'
                    f'"more_body":{"true" if message.get("more_body") else "false"},'
                    f'"waited_us":{time_ns() // 1000 - began}}}')
            else:
                trace.parts.append(
                    f'{{"event":"send","ts_us":{began},"type":{_json_string(str(kind))},"n":{trace.sends},'
                    f'"bytes":{size},"waited_us":{time_ns() // 1000 - began}}}')

        try:
            await self.app(scope, traced_receive, traced_send)
        except BaseException as error:
            trace.event("asgi_app_raised", error=type(error).__name__)
            trace.write()
            raise
        trace.finish_returned()


def _size(message: Message) -> int:
    """The bytes a message carries: an HTTP body, or a websocket message's bytes or text (as UTF-8)."""
    data = message.get("body") or message.get("bytes") or message.get("text") or b""
    return len(data.encode()) if isinstance(data, str) else len(data)


def _json_value(value: Any) -> str:
    """An int as itself, anything else as null: a status the app sent that is not a number."""
    return str(value) if type(value) is int else "null"
