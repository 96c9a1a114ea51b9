"""WSGI entry point: gunicorn and uWSGI both load ``labsite.wsgi:application``.

``get_wsgi_application()`` sets Django up (settings, apps, middleware) once per
process that imports this module, and returns the callable the server calls
for every request: in each worker, or once in the master where the server
imports the app before it forks (WSGI_PRELOAD_APP).
"""

import os

from django.core.wsgi import get_wsgi_application

from wsgilab.container import database

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings")

application = get_wsgi_application()

if database.connect_at_import():
    # The mistake `hoptrace lab connection-before-fork` makes on purpose: a connection opened as the app is
    # imported (a query at import does the same). Where the server imports the app in its master, every worker
    # it forks inherits it; Django's own close at a request's start and end (CONN_MAX_AGE 0) is what then
    # stands between the workers and sharing it.
    from django.db import connection, connections

    connection.ensure_connection()
    database.opened_at_import(connections.close_all, connection.connection.info.backend_pid)
