"""ASGI entry point: an ASGI server (FLASK_SERVER=uvicorn) loads ``asgi:application``.

Flask is a WSGI framework: it has no ASGI side of its own. asgiref's
``WsgiToAsgi`` adapter makes one: for each request it builds a WSGI environ
from the ASGI scope, reads the whole request body first, and runs the WSGI
app on a thread, one request at a time per process (sync_to_async's
thread-sensitive mode), turning what it returns into ASGI messages. What that
costs is what FLASK_SERVER=uvicorn shows beside gunicorn.
"""

from asgiref.wsgi import WsgiToAsgi

from wsgi import app

application = WsgiToAsgi(app)
