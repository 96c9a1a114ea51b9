"""What runs inside the app containers (and beside the native test servers), in a request's order.

- ``launch``: starts the app under gunicorn or uWSGI, as its service is set
  (``python -m wsgilab.container.launch``); ``healthcheck`` asks that server
  for the app's home page in its own protocol (``uwsgi_protocol`` speaks the
  uwsgi one), at the address both find in ``listen_address``; ``workers`` is
  how the labs kill a server's workers from inside;
- ``gunicorn_trace``: gunicorn's hop, JSON request and error lines (uWSGI's
  hop is its ``log-format`` in uwsgi.ini);
- ``traced_app``: the WSGI entry point both servers load: the app wrapped in
  ``wsgi_trace.HopTrace`` (the WSGI protocol's events) and
  ``server_timing`` (the ``Server-Timing`` header it adds);
  ``nginx_headers`` checks what nginx sends it (the request id, when it
  handed the request on);
- ``django_trace``, ``flask_trace``: the framework's and the view's events;
- ``labkit``: what the Django and Flask endpoints compute alike;
  ``unimportable_app``: an app that fails to import, for the import-failure lab.

Nothing here imports the host side (``wsgilab.hoptrace``, ``wsgilab.labs``):
tests/test_package_layout.py fails if it does.
"""
