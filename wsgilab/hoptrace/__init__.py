"""hoptrace, on the host: read every hop's log lines back into each request's path.

The trace's second half, in the order a log line travels:

- ``sources``: where the lines come from (files, stdin, ``docker compose logs``);
- ``records``: the one normalizer: finds the hop records on the lines and
  turns a request's records into its events, in causal order;
- ``waterfall``: one request's events as text (``hoptrace show``);
- ``follow``: requests as they complete (``hoptrace follow``);
- ``stats``: where the time goes, per segment (``hoptrace stats``);
- ``spans``: a request's records as the spans of its W3C trace, a tree;
  ``export`` writes them as OTLP/JSON or Chrome trace events, and
  ``export_cli`` is ``hoptrace export`` (files, live, or pushed to an OTLP
  receiver);
- ``cli``: the ``hoptrace`` command itself.

The format it reads is ``wsgilab.trace_format``; the labs (``hoptrace lab``)
live in ``wsgilab.labs``.
"""
