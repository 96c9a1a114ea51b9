"""ASGI entry point: an ASGI server (DJANGO_SERVER=uvicorn) loads ``labsite.asgi:application``.

``get_asgi_application()`` sets Django up as ``get_wsgi_application()`` does,
and returns Django's ASGI handler. The views and middleware stay the sync
functions the WSGI side runs: for each request the handler runs them on a
thread of asgiref's (``sync_to_async``), one request at a time per process by
default, and awaits that thread from the event loop. The trace's events from
the view and the database come from that thread.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings")

application = get_asgi_application()
