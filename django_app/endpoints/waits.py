"""The Django app's endpoints that wait for an item: async views, on either side.

``/wait?s=N`` (a long poll) and ``/events?s=N`` (server-sent events) answer
with the items any app stores (its ``POST /items`` runs ``pg_notify`` in the
item's transaction: wsgilab.container.database.ANNOUNCE); each LISTENs on a
connection of its own, opened with psycopg's async API. ``/ws`` is a
websocket, which Django's handler does not take: labsite/asgi.py hands it
to a consumer of its own (``echo``, below), and the view here answers a
request that is not a handshake, or that reached a WSGI server, with 426.

They are ``async def`` views, so the side they run on decides what a wait
costs. Under ASGI (DJANGO_SERVER=uvicorn) Django awaits them on the event
loop: a waiting request holds no thread, only its database connection.
Under WSGI, Django runs each in an event loop of its own inside the worker
thread (asgiref's async_to_sync), which the wait holds to its end: Django's
docs call it running "without the ability to have efficient long-running
requests". And an event stream is not a stream there: under WSGI Django
reads an async iterator to its end before it sends a byte of it, so the
client gets every event at once when the N seconds are over.
"""

import json
import time

from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_safe

from wsgilab.container import database


class Unavailable(Exception):
    """The database cannot be listened to: none is configured, or it did not answer (a 503)."""


async def _opened(request):
    """(the ``s`` query parameter, a connection of this request's own LISTENing on the items' channel);
    database.BadInput or Unavailable says why not. Autocommit: a LISTEN inside a transaction hears nothing
    until the transaction ends."""
    import psycopg

    seconds = database.parse_wait_s(request.GET.get("s"))
    try:
        conn = await psycopg.AsyncConnection.connect(**database.required().connect_kwargs(), autocommit=True)
        await conn.execute(f"LISTEN {database.CHANNEL}")
    except (database.Misconfigured, psycopg.OperationalError) as problem:
        raise Unavailable(str(problem)) from None
    return seconds, conn


def _refused(problem):
    return JsonResponse({"error": str(problem)}, status=400 if isinstance(problem, database.BadInput) else 503)


@require_safe
async def wait(request):
    """The next item any app stores within ``s`` seconds, or ``{"event": null}``."""
    try:
        seconds, conn = await _opened(request)
    except (database.BadInput, Unavailable) as problem:
        return _refused(problem)
    began = time.monotonic()
    async with conn:
        async for notify in conn.notifies(timeout=seconds, stop_after=1):
            return JsonResponse({"event": "item", "item": json.loads(notify.payload),
                                 "waited_s": round(time.monotonic() - began, 3)})
    return JsonResponse({"event": None, "waited_s": round(time.monotonic() - began, 3)})


@require_safe
async def events(request):
    """Server-sent events: each item stored in the next ``s`` seconds, then an ``end`` event."""
    try:
        seconds, conn = await _opened(request)
    except (database.BadInput, Unavailable) as problem:
        return _refused(problem)

    async def stream():
        async with conn:
            yield b": listening\n\n"
            async for notify in conn.notifies(timeout=seconds):
                yield f"event: item\ndata: {notify.payload}\n\n".encode()
            yield b"event: end\ndata: {}\n\n"

    response = StreamingHttpResponse(stream(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@require_safe
def websocket_wanted(request):
    """426 for /ws over plain HTTP: a websocket handshake goes to ``echo`` on the ASGI side only."""
    response = JsonResponse({"error": "/django/ws is a websocket: send the handshake to the app's ASGI side "
                                      "(DJANGO_SERVER=uvicorn); a WSGI server never hands the app a connection"},
                            status=426)
    response["Upgrade"] = "websocket"
    return response


async def echo(scope, receive, send):
    """The websocket consumer: accept, then send back each message, until the client closes."""
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
