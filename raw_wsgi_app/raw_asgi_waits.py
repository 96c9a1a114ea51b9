"""The raw app's endpoints that wait for something to happen, the ASGI way: a wait holds no worker.

The same three as raw_waits.py, the WSGI side's:

``/wait?s=N``    a long poll: the next item any app stores (its ``POST /items`` notifies), or after N
                 seconds ``{"event": null}``
``/events?s=N``  server-sent events: each item stored in the next N seconds, as it comes, then the end
``/ws``          a websocket that sends back each message it receives

A waiting request is a coroutine suspended on a queue: the process goes on
serving everything else meanwhile. All of a process's waiting requests share
one database connection that LISTENs (``ItemListener``), where each WSGI
wait opens its own. And the app hears a client leave: it awaits
``receive()`` beside its wait, and ``http.disconnect`` ends the wait at
once, where a WSGI worker waits on for nobody.

psycopg is imported with the module, as the worker starts, not on a
request's first wait (as the WSGI side's endpoints do): an import is a
blocking call, and in a coroutine it would hold the worker's whole event
loop, every request in the process with it, for as long as it takes
(over a tenth of a second; more on a loaded machine).
"""

import asyncio
import json
import logging
from urllib.parse import parse_qs

import psycopg

from wsgilab.container import database

log = logging.getLogger("raw_asgi")


class ItemListener:
    """One connection per process that LISTENs on the items' channel and hands each notification to every
    request waiting in this process. Made on the first wait; made again if the database dropped it."""

    def __init__(self):
        self._queues = set()
        self._relay = None
        self._lock = asyncio.Lock()

    async def subscribe(self):
        """A queue that gets the payload of each item stored from now on; unsubscribe() it when done."""
        async with self._lock:
            if self._relay is None or self._relay.done():
                conn = await psycopg.AsyncConnection.connect(**database.required().connect_kwargs(),
                                                             autocommit=True)
                await conn.execute(f"LISTEN {database.CHANNEL}")
                self._relay = asyncio.create_task(self._hand_on(conn))
        queue = asyncio.Queue()
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue):
        self._queues.discard(queue)

    async def _hand_on(self, conn):
        try:
            async with conn:
                async for notify in conn.notifies():
                    for queue in list(self._queues):
                        queue.put_nowait(notify.payload)
        except Exception:
            log.exception("the listening connection failed: the next wait opens a new one")


LISTENER = ItemListener()


async def _json(send, status, payload, extra_headers=()):
    body = (json.dumps(payload, indent=2) + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra_headers]})
    await send({"type": "http.response.body", "body": body})


async def _disconnected(receive):
    """Return when the client has gone: the request's body first, then ``http.disconnect``."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _listening(scope, send):
    """(seconds, queue) for a wait, or None once it has answered 400 or 503 itself."""
    try:
        seconds = database.parse_wait_s(parse_qs(scope.get("query_string", b"").decode("latin-1")).get("s", [None])[0])
    except database.BadInput as error:
        await _json(send, 400, {"error": str(error)})
        return None
    try:
        return seconds, await LISTENER.subscribe()
    except (database.Misconfigured, psycopg.OperationalError) as problem:
        await _json(send, 503, {"error": f"the database cannot be listened to: {problem}"})
        return None


async def wait(scope, receive, send):
    """The next item stored within ``s`` seconds, or ``{"event": null}``; nothing at all if the client leaves."""
    listening = await _listening(scope, send)
    if listening is None:
        return
    seconds, queue = listening
    loop = asyncio.get_running_loop()
    began = loop.time()
    got, gone = asyncio.ensure_future(queue.get()), asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait({got, gone}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        got.cancel()
        gone.cancel()
        LISTENER.unsubscribe(queue)
    if gone in done:
        return  # the client left: no one to answer, and nothing was held for it meanwhile
    waited = round(loop.time() - began, 3)
    if got in done:
        await _json(send, 200, {"event": "item", "item": json.loads(got.result()), "waited_s": waited})
    else:
        await _json(send, 200, {"event": None, "waited_s": waited})


async def events(scope, receive, send):
    """Server-sent events: each item stored in the next ``s`` seconds, then an ``end`` event."""
    listening = await _listening(scope, send)
    if listening is None:
        return
    seconds, queue = listening
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                                (b"x-accel-buffering", b"no")]})
        await send({"type": "http.response.body", "body": b": listening\n\n", "more_body": True})
        while (left := deadline - loop.time()) > 0:
            got = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({got, gone}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            got.cancel()
            if gone in done:
                return
            if got not in done:
                break
            await send({"type": "http.response.body", "body": f"event: item\ndata: {got.result()}\n\n".encode(),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b"event: end\ndata: {}\n\n"})
    finally:
        gone.cancel()
        LISTENER.unsubscribe(queue)


async def websocket_wanted(scope, receive, send):
    """A plain request to /ws: 426, naming the protocol the endpoint speaks."""
    await _json(send, 426, {"error": "this endpoint is a websocket: send the handshake (Upgrade: websocket)"},
                [(b"upgrade", b"websocket")])


async def websocket(scope, receive, send):
    """Accept the websocket, then send back each message it receives, until the client closes it."""
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
