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
  and ``wsgilab.traced_app`` wraps the app in it for both servers;
- ``wsgilab.django_trace`` and ``wsgilab.flask_trace`` add the framework's
  and the view's events to the same trace; ``wsgilab.gunicorn_trace`` makes
  gunicorn's request and error lines JSON (uWSGI's are set in uwsgi.ini);
- ``wsgilab.hoptrace`` is the command line that rebuilds requests' paths from
  all hops' logs: ``hoplog`` reads the logs into events, ``waterfall`` prints
  one request, ``hopstats`` computes per-hop percentiles;
- ``wsgilab.labs`` holds the failure labs (``hoptrace lab NAME``), and
  ``wsgilab.rawhttp`` sends the raw HTTP bytes they need.
"""

__version__ = "0.1.0"
