"""Run the traced app under Granian, with the settings in granian.conf.py.

``python -m wsgilab.container.granian_main --config granian.conf.py`` is
what the launcher execs for ``WSGI_SERVER=granian``. Granian reads no config
file of its own, so this reads ours (a Python file, as gunicorn's is) and
hands its names to Granian's Python API, ``granian.Granian(**settings)``,
as keyword arguments: a name Granian does not take stops it with a
TypeError that names it. This process is Granian's main process: it
imports no app; each worker process imports ``target``.
"""

from __future__ import annotations

import argparse
import sys

from wsgilab.container.server_config import public_names


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsgilab.container.granian_main")
    parser.add_argument("--config", required=True, help="granian.conf.py")
    settings = public_names(parser.parse_args(argv).config)
    from granian import Granian

    Granian(**settings).serve()


if __name__ == "__main__":
    main(sys.argv[1:])
