"""Which compose tool drives the stack: ``docker compose`` (v2) where it answers, else ``docker-compose`` (v1).

README.md tells users to type ``docker compose``, the Compose v2 plugin that
nearly every Docker install has; some machines (Debian bookworm's packages)
have only the older ``docker-compose`` 1.29. hoptrace, the labs' stack
control, the tests' stack and the benchmarks all ask this one function, so
they never disagree about which tool made the containers they read.

``WSGILAB_COMPOSE`` picks one by hand: ``docker compose`` or
``docker-compose`` (the tests drive a v1 smoke this way on a machine that
has both). The two tools name containers differently (``wsgilab-nginx-1``
against ``wsgilab_nginx_1``); nothing in wsgi-lab looks a container up by
name, only by compose's labels (``com.docker.compose.project`` and
``.service``), which both set the same way.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

#: The environment variable that picks the tool by hand.
ENV = "WSGILAB_COMPOSE"
V2 = ("docker", "compose")
V1 = ("docker-compose",)
_BY_NAME = {" ".join(V2): V2, " ".join(V1): V1}


class ComposeToolError(FileNotFoundError):
    """No compose tool can be run (or ``WSGILAB_COMPOSE`` names one that cannot); the message says which."""


@functools.cache
def version(tool: tuple[str, ...]) -> str | None:
    """What ``TOOL version --short`` says ("2.26.1", "1.29.2"), or None if the tool does not run."""
    if not shutil.which(tool[0]):
        return None
    try:
        done = subprocess.run([*tool, "version", "--short"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def compose_command() -> list[str]:
    """The compose tool to run, as argv: ``WSGILAB_COMPOSE``'s, else v2 if it answers, else v1.

    Raises ComposeToolError when none runs, or when ``WSGILAB_COMPOSE`` is
    not one of the two tools or names one that does not run.
    """
    chosen = os.environ.get(ENV, "").strip()
    if chosen:
        tool = _BY_NAME.get(" ".join(chosen.split()))
        if tool is None:
            raise ComposeToolError(f"{ENV} must be {' or '.join(repr(name) for name in _BY_NAME)}, not {chosen!r}")
        if version(tool) is None:
            raise ComposeToolError(f"{ENV}={chosen!r}, but `{' '.join(tool)} version` does not run here")
        return list(tool)
    for tool in (V2, V1):
        if version(tool) is not None:
            return list(tool)
    raise ComposeToolError("neither `docker compose` (v2) nor `docker-compose` (v1) is installed "
                           "(scripts/compose-v2 installs v2 from Debian's packages)")


def describe(command: list[str]) -> str:
    """The tool and its version, for a header or ``--verbose``: "docker compose 2.26.1"."""
    return f"{' '.join(command)} {version(tuple(command)) or '(version unknown)'}"
