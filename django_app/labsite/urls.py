"""Root URLconf: every lab endpoint lives in the ``endpoints`` app.

The paths carry no ``/django`` prefix: nginx routes ``/django/`` here and the
WSGI server puts that prefix in ``SCRIPT_NAME``, which ``reverse()`` and
redirects then prepend by themselves.

``trace_views`` wraps each view so its call and return show in the request's
hop trace (see ``wsgilab.container.django_trace``).
"""

from django.urls import include, path

from wsgilab.container.django_trace import trace_views

urlpatterns = trace_views([
    path("", include("endpoints.urls")),
])
