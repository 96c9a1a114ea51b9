"""The guided tour's steps, run: docs/tour.md's commands against a stack, their outputs checked or rewritten.

    python -m wsgilab.tour            # run every step against the stack on :8080; say which output changed shape
    python -m wsgilab.tour --write    # the same, and put the outputs it got into docs/tour.md

Each ```` ```console ```` block of the page is one step's terminal: lines that
start with ``$ `` are commands, the lines after one are what it printed. The
commands of a block run in one bash, in order, from the repository's folder
(``hoptrace`` from the same Python as this module). A comment line before a
block, ``<!-- tour: RAW_SERVER=uwsgi -->``, says which server each app must be
on for it. A step's output keeps its *shape* when, with request ids, numbers
and addresses taken out, every line the page shows is still there, in any
order (``...`` on a line of its own stands for lines the page leaves out).
tests/test_tour.py runs every step against the compose test stack.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "tour.md"
#: The port the page's commands name; a run against another stack puts its own port there.
PAGE_PORT = 8080
_BLOCK = re.compile(r"(?:<!-- tour: ([^>]*?) -->\n)?```console\n(.*?)```", re.S)
_MARK = "@@wsgilab-tour-step@@"
#: What changes from run to run and is taken out before two outputs are compared.
_VOLATILE = [(re.compile(r"[0-9a-f]{8,}"), "<id>"), (re.compile(r"\d+(?:\.\d+)?"), "<n>"), (re.compile(r"\s+"), " ")]


@dataclass
class Step:
    """One console block: the servers it needs, its commands, and what the page says each printed."""

    servers: dict[str, str]
    commands: list[str] = field(default_factory=list)
    outputs: list[list[str]] = field(default_factory=list)
    #: Where the block's body sits in the page, to rewrite it.
    span: tuple[int, int] = (0, 0)


def steps(page: str) -> list[Step]:
    """The console blocks of ``page``, in order."""
    found = []
    for match in _BLOCK.finditer(page):
        servers = dict(pair.split("=", 1) for pair in (match.group(1) or "").split())
        step = Step({name[:-len("_SERVER")].lower(): value for name, value in servers.items()},
                    span=match.span(2))
        for line in match.group(2).splitlines():
            if line.startswith("$ "):
                step.commands.append(line[2:])
                step.outputs.append([])
            elif step.commands:
                step.outputs[-1].append(line)
        found.append(step)
    return found


def shape(line: str) -> str:
    """``line`` with what changes between runs taken out."""
    for pattern, stands_for in _VOLATILE:
        line = pattern.sub(stands_for, line)
    return line.strip()


def shape_differences(shown: list[str], printed: list[str]) -> list[str]:
    """The lines the page shows that the command did not print (by shape, each as often as shown); [] if none.

    Not in order: hops that log the same moment may come in either order (an nginx error line has whole
    seconds only), and the page's order is one run's.
    """
    got = [shape(line) for line in printed]
    missing = []
    for line in shown:
        if line.strip() == "...":
            continue
        try:
            got.remove(shape(line))
        except ValueError:
            missing.append(line)
    return missing


def run_step(step: Step, port: int, env: dict[str, str]) -> list[list[str]]:
    """Run a step's commands in one bash against nginx on ``port``; what each printed, in lines."""
    script = "".join(f"echo {_MARK}\n{command.replace(str(PAGE_PORT), str(port))}\n" for command in step.commands)
    done = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    printed = (done.stdout + done.stderr).split(_MARK + "\n")[1:]
    return [text.rstrip("\n").replace(str(port), str(PAGE_PORT)).splitlines() for text in printed]


def tour_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the steps run in: ``hoptrace`` of this Python first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **(extra or {})}


def run(page: str, port: int, env: dict[str, str], use: Callable[[dict[str, str]], None],
        say: Callable[[str], None] = print) -> tuple[str, list[str]]:
    """Run every step; the page with the outputs it got, and what changed shape (one line per difference)."""
    differences, pieces, last = [], [], 0
    for number, step in enumerate(steps(page), 1):
        use(step.servers)
        printed = run_step(step, port, env)
        body = "".join(f"$ {command}\n" + "".join(f"{line}\n" for line in lines)
                       for command, lines in zip(step.commands, printed))
        pieces += [page[last:step.span[0]], body]
        last = step.span[1]
        for command, shown, got in zip(step.commands, step.outputs, printed):
            for line in shape_differences(shown, got):
                differences.append(f"step {number}, `{command}`: no longer prints a line like {line!r}")
        say(f"tour: step {number} ({len(step.commands)} commands) run")
    return "".join(pieces) + page[last:], differences


def _use_on_compose(servers: dict[str, str]) -> None:
    """Put the apps ``servers`` names on those servers (the rest on .env's), with docker compose."""
    env = {**os.environ, **{f"{app.upper()}_SERVER": server for app, server in servers.items()}}
    subprocess.run(["docker", "compose", "up", "-d", "--wait"], cwd=REPO, env=env, check=True,
                   capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsgilab.tour", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="put the outputs this run got into the page")
    parser.add_argument("--port", type=int, default=PAGE_PORT, help="nginx's port (default 8080)")
    args = parser.parse_args(argv)
    page = PAGE.read_text()
    rewritten, differences = run(page, args.port, tour_environment(), _use_on_compose,
                                 lambda line: print(line, file=sys.stderr))
    _use_on_compose({})
    if args.write:
        PAGE.write_text(rewritten)
    for line in differences:
        print(line)
    return 0 if args.write or not differences else 1


if __name__ == "__main__":
    sys.exit(main())
