"""wsgilab: the Python code of wsgi-lab, in parts that follow a request and then its trace.

- ``wsgilab.container``: what runs inside the app containers: the launcher,
  the healthcheck, and the instrumentation every hop writes its log line
  with (gunicorn's hooks, HopTrace around the WSGI app, the Django and Flask
  hooks, the view wrapper);
- ``wsgilab.hoptrace``: the host tool that reads those lines back: log
  sources, the normalizer, the waterfall, follow, stats, the command line;
- ``wsgilab.labs``: the failure labs (``hoptrace lab``) and how they drive a stack;
- ``wsgilab.swarm``: ``scripts/swarm``, the same stack on Docker Swarm.

Two modules are the contracts both sides share: ``trace_format`` (every
record and event) and ``trace_context`` (W3C ``traceparent``, as nginx and
HopTrace read it); ``settings`` is the table of settings.

The package is installed into every app image (and into the test venv),
never copied into an app's folder. The container side never imports the
other two.
"""

__version__ = "0.1.0"
