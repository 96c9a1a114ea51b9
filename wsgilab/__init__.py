"""wsgilab: the Python code the three lab apps share.

It is installed into every app image (and into the test venv), never copied
into an app's folder:

- ``wsgilab.launch`` starts an app under gunicorn or uWSGI, as its service is
  set to do;
- ``wsgilab.healthcheck`` asks that server for the app's home page, in the
  protocol the server speaks (HTTP or uwsgi);
- ``wsgilab.uwsgi_protocol`` encodes the uwsgi binary protocol nginx speaks
  to uWSGI, so the healthcheck (and the tests) can speak it too;
- ``wsgilab.labkit`` holds what the Django and Flask endpoints compute alike;
- ``wsgilab.tracing`` (HopTrace) records each request's WSGI protocol events,
  ``wsgilab.traced_app`` wraps the app in it for both servers, and
  ``wsgilab.hoptrace`` rebuilds a request's path from all hops' logs.
"""

__version__ = "0.1.0"
