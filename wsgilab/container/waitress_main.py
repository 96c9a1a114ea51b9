"""Run the traced app under Waitress, with the settings in waitress.conf.py.

``python -m wsgilab.container.waitress_main --config waitress.conf.py`` is
what the launcher execs for ``WSGI_SERVER=waitress``. Waitress reads no
config file of its own, so this reads ours (a Python file, as gunicorn's
is), keeps the names that are Waitress's adjustments, and hands them to
``waitress.serve`` with the app. The app is imported here, in Waitress's
one process, before it listens.

Waitress sets no signal handler of its own: on SIGTERM (``docker compose
stop``) Python would end at once. So SIGTERM raises SystemExit, which
Waitress's loop takes as its cue to close: it stops accepting and gives its
threads up to 5 s to finish (``waitress.task.ThreadedTaskDispatcher.shutdown``).
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from wsgilab.container.server_config import public_names


def settings_from(config: str) -> dict[str, Any]:
    """The names in ``config`` that are Waitress adjustments; SystemExit naming any other public name."""
    from waitress.adjustments import Adjustments

    found = public_names(config)
    unknown = sorted(set(found) - set(Adjustments._param_map))
    if unknown:
        raise SystemExit(f"waitress_main: {config} sets what Waitress has no adjustment for: {', '.join(unknown)}")
    return found


def _stop(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsgilab.container.waitress_main")
    parser.add_argument("--config", required=True, help="waitress.conf.py")
    settings = settings_from(parser.parse_args(argv).config)
    import waitress

    from wsgilab.container import waitress_trace
    from wsgilab.container.traced_app import application

    signal.signal(signal.SIGTERM, _stop)
    # Waitress's own dispatcher, which joins its queue warning to the request it names (waitress_trace);
    # create_server takes it as _dispatcher.
    waitress.serve(application, _dispatcher=waitress_trace.install(settings.get("threads", 4)), **settings)


if __name__ == "__main__":
    main(sys.argv[1:])
