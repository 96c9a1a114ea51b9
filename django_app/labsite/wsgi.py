"""WSGI entry point: gunicorn and uWSGI both load ``labsite.wsgi:application``.

``get_wsgi_application()`` sets Django up (settings, apps, middleware) once per
worker process and returns the callable the server calls for every request.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings")

application = get_wsgi_application()
