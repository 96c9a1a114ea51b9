"""ASGI entry point: an ASGI server (DJANGO_SERVER=uvicorn) loads ``labsite.asgi:application``.

Django's own handler takes HTTP only; a websocket to ``/django/ws`` goes to
a consumer of this app's own (endpoints.waits.echo), and any other is
refused (closed before it is accepted: the client gets a 403).

``get_asgi_application()`` sets Django up as ``get_wsgi_application()`` does,
and returns Django's ASGI handler. The views and middleware stay the sync
functions the WSGI side runs: for each request the handler runs them on a
thread of its own (asgiref's ``sync_to_async``; Django opens a
ThreadSensitiveContext per request), and the event loop serves other
requests while it awaits that thread. The trace's events from the view and
the database come from that thread.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings")

django_application = get_asgi_application()


async def application(scope, receive, send):
    """Django for HTTP (and its lifespan refusal); the app's own consumer for its websocket."""
    if scope["type"] != "websocket":
        await django_application(scope, receive, send)
        return
    from endpoints.waits import echo  # after setup: the app registry is ready

    if scope["path"].removeprefix(scope.get("root_path", "")) == "/ws":
        await echo(scope, receive, send)
    else:
        await send({"type": "websocket.close", "code": 1008})
