"""Where hoptrace's log lines come from: files, stdin, or ``docker compose logs``.

With neither files nor a pipe (stdin a terminal), or with ``--compose``,
hoptrace runs ``docker compose logs`` itself in the current directory's
compose project (``--follow`` for ``hoptrace follow``). The compose tool is
picked once, here, for hoptrace, the labs and the test stacks alike.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import TextIO


def compose_command() -> list[str]:
    """``docker compose`` where the plugin is installed, else the older ``docker-compose``.

    Raises FileNotFoundError when neither is installed.
    """
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise FileNotFoundError("neither `docker compose` nor `docker-compose` is installed")


def compose_logs(*options: str) -> Iterator[str]:
    """The lines ``docker compose logs OPTIONS`` prints, as it prints them."""
    argv = [*compose_command(), "logs", "--no-color", *options]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, errors="replace") as process:
        assert process.stdout is not None
        yield from process.stdout


def input_lines(files: list[str], stdin: TextIO, follow: bool = False, compose: bool = False) -> Iterator[str]:
    """The lines to read: the files in turn, else stdin, else ``docker compose logs``."""
    if files:
        for name in files:
            with open(name, errors="replace") as handle:
                yield from handle
    elif compose or stdin.isatty():
        yield from compose_logs("--follow", "--tail", "0") if follow else compose_logs()
    else:
        yield from stdin


def compose_container_ids() -> list[str]:
    """The IDs of the current compose project's containers ([] when it has none, or compose fails)."""
    done = subprocess.run([*compose_command(), "ps", "-q"], capture_output=True, text=True)
    return done.stdout.split() if done.returncode == 0 else []
