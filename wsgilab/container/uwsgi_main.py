"""Start uWSGI (pyuwsgi, in this process) with a relay on stderr: ``python -m wsgilab.container.uwsgi_main ARGS``.

The launcher runs uWSGI through this module rather than the ``uwsgi``
command, so that the lines uWSGI prints before its log master starts (it
reads its config first) become JSON records too (``log_lines.relay_stderr``).
A reload (SIGHUP) re-executes the same command line, so it passes here again
and gets a relay of its own.
"""

import os
import sys

import pyuwsgi

from wsgilab.container.log_lines import relay_stderr

if __name__ == "__main__":
    relay_stderr("uwsgi", os.environ.get("WSGILAB_SERVICE", ""), "uwsgi")
    sys.exit(pyuwsgi.run())
