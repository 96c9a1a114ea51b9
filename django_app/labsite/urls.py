"""Root URLconf: every lab endpoint lives in the ``endpoints`` app.

The paths carry no ``/django`` prefix: nginx routes ``/django/`` here and the
WSGI server puts that prefix in ``SCRIPT_NAME``, which ``reverse()`` and
redirects then prepend by themselves.
"""

from django.urls import include, path

urlpatterns = [
    path("", include("endpoints.urls")),
]
