"""Run the traced ASGI app under uvicorn, with the settings in uvicorn.conf.py.

``python -m wsgilab.container.uvicorn_main --config uvicorn.conf.py`` is
what the launcher execs for ``WSGI_SERVER=uvicorn``. uvicorn reads no config
file of its own, so this reads ours (a Python file, as gunicorn's is) and
hands its names to ``uvicorn.run(**settings)``, uvicorn's own entry point,
as keyword arguments: a name it does not take stops it with a TypeError that
names it. With more than one worker this process is uvicorn's supervisor: it
binds the socket, starts the workers (each imports ``app``) and starts a new
one when one dies.
"""

from __future__ import annotations

import argparse
import sys

from wsgilab.container.server_config import public_names


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsgilab.container.uvicorn_main")
    parser.add_argument("--config", required=True, help="uvicorn.conf.py")
    settings = public_names(parser.parse_args(argv).config)
    import uvicorn

    uvicorn.run(**settings)


if __name__ == "__main__":
    main(sys.argv[1:])
