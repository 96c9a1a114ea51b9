"""The guided tour's steps, run: the commands of its pages (``PAGES``, docs/tour.md first) against a stack, their
outputs checked or rewritten.

    python -m wsgilab.tour            # run every step against the stack on :8080; say which output changed shape
    python -m wsgilab.tour --write    # the same, and put the outputs it got into the pages

Each ```` ```console ```` block of a page is one step's terminal: lines that
start with ``$ `` are commands, the lines after one are what it printed. The
commands of a block run in one bash, in order, from the repository's folder
(``hoptrace`` from the same Python as this module). A comment line before a
block, ``<!-- tour: RAW_SERVER=uwsgi -->``, says which server each app must be
on for it, and any other setting it needs (``RAW_WSGI_MIDDLEWARE=app_timer:timed``).
A step's output keeps its *shape* when, with request ids, numbers and
addresses taken out, every line the page shows is still there, in any
order (``...`` on a line of its own stands for lines the page leaves out).
Where a step's lesson rests on a number or an order, which shape leaves
out, a line ``<!-- tour-check: ... -->`` before the block states it, and
every run checks it (``broken_claims``). tests/test_tour.py runs every step
against the compose test stack.
"""

from __future__ import annotations

import argparse
import operator
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wsgilab.settings import EVERY_TRACE

REPO = Path(__file__).resolve().parent.parent
#: The tour's pages, in reading order: the contract, the app in its server, nginx in front, between nginx and
#: the server, and where WSGI stops (ASGI).
PAGES = tuple(REPO / "docs" / name for name in ("tour.md", "tour-stack.md", "tour-nginx.md", "tour-wire.md", "asgi.md"))
#: The port the page's commands name; a run against another stack puts its own port there.
PAGE_PORT = 8080
_BLOCK = re.compile(r"((?:<!-- tour(?:-check)?: [^\n]*? -->\n)*)```console\n(.*?)```", re.S)
_COMMENT = re.compile(r"<!-- tour(-check)?: ([^\n]*?) -->")
#: A claim of a number: ``waited {} ms > 1000``; of an order: ``teardown_request hooks before first body chunk``.
_NUMBER_CLAIM = re.compile(r"^(?P<text>.*\{\}.*?) (?P<op>[<>]|==) (?P<bound>-?\d+(?:\.\d+)?)$")
_ORDER_CLAIM = re.compile(r"^(?P<first>.+?) before (?P<then>.+)$")
_ONE_COMMAND = re.compile(r"^command (?P<n>\d+): (?P<claim>.+)$")
_COMPARISONS = {"<": operator.lt, ">": operator.gt, "==": operator.eq}
_MARK = "@@wsgilab-tour-step@@"
#: What changes from run to run and is taken out before two outputs are compared.
_VOLATILE = [(re.compile(r"[0-9a-f]{8,}"), "<id>"),
             # numbers in hex, and bytes (a uwsgi packet's lengths follow the port and the addresses)
             (re.compile(r"\b0x[0-9a-f]+\b"), "<n>"),
             (re.compile(r"(?<![\w.])(?:[0-9][0-9a-f]|[a-f][0-9])(?![\w.])"), "<n>"),
             (re.compile(r"\d+(?:\.\d+)?"), "<n>"), (re.compile(r"\s+"), " ")]


@dataclass
class Step:
    """One console block: the servers it needs, its commands, and what the page says each printed."""

    servers: dict[str, str]
    #: Other settings the block needs (``RAW_WSGI_MIDDLEWARE=...``), by name.
    settings: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    outputs: list[list[str]] = field(default_factory=list)
    #: Where the block's body sits in the page, to rewrite it.
    span: tuple[int, int] = (0, 0)
    #: What the page says of the block's output beyond its shape (``<!-- tour-check: ... -->``).
    claims: list[str] = field(default_factory=list)


def steps(page: str) -> list[Step]:
    """The console blocks of ``page``, in order."""
    found = []
    for match in _BLOCK.finditer(page):
        comments = _COMMENT.findall(match.group(1))
        named = dict(pair.split("=", 1) for check, text in comments if not check for pair in text.split())
        servers = {name[:-len("_SERVER")].lower(): value for name, value in named.items() if name.endswith("_SERVER")}
        settings = {name: value for name, value in named.items() if not name.endswith("_SERVER")}
        step = Step(servers, settings, span=match.span(2), claims=[text for check, text in comments if check])
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


def broken_claims(claims: list[str], outputs: list[list[str]]) -> list[str]:
    """The claims a page makes of a block's output that ``outputs`` (the lines each command printed) breaks,
    each with what was printed; [] if none.

    ``waited {} ms > 1000``: every line holding that text, a number in place of ``{}``, is past the bound, and
    there is one; ``some: waited {} ms > 1000``, one line at least (a number's claim only). ``A before B``: a
    line holding A comes before the first line holding B. ``command 2: ...`` reads the second command's lines
    only; without it, a claim reads every command's.
    """
    broken = []
    for stated in claims:
        claim, printed = stated, [line for lines in outputs for line in lines]
        if only := _ONE_COMMAND.match(stated):
            claim, n = only["claim"], int(only["n"])
            printed = outputs[n - 1] if 1 <= n <= len(outputs) else []
        some = claim.startswith("some: ")
        if number := _NUMBER_CLAIM.match(claim.removeprefix("some: ")):
            pattern = re.compile(re.escape(number["text"]).replace(r"\{\}", r"(-?\d+(?:\.\d+)?)"))
            values = [float(found[1]) for line in printed if (found := pattern.search(line))]
            compare, bound = _COMPARISONS[number["op"]], float(number["bound"])
            holds = [compare(value, bound) for value in values]
            if not values or not (any(holds) if some else all(holds)):
                broken.append(f"{stated!r}: printed {values or 'no such line'}")
        elif some:
            raise ValueError(f"a tour-check with some: states a number ({{}} and a bound): {stated!r}")
        elif order := _ORDER_CLAIM.match(claim):
            at = {name: next((n for n, line in enumerate(printed) if order[name] in line), None)
                  for name in ("first", "then")}
            if None in at.values() or at["first"] > at["then"]:
                broken.append(f"{stated!r}: lines {at['first']} and {at['then']} of what it printed")
        else:
            raise ValueError(f"a tour-check the tour cannot read: {stated!r} (``TEXT {{}} > N`` or ``A before B``)")
    return broken


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


def _state(step: Step) -> tuple:
    return tuple(sorted(step.servers.items())), tuple(sorted(step.settings.items()))


def run(pages: dict[str, str], port: int, env: dict[str, str],
        use: Callable[[dict[str, str], dict[str, str]], None],
        say: Callable[[str], None] = print) -> tuple[dict[str, str], list[str], list[str]]:
    """Run every step of ``pages`` (name: text, in reading order); each page with the outputs it got, what
    changed shape (one line per difference), and which of the pages' claims (``tour-check``) this run broke.

    Steps run grouped by the stack they need, the stack as it is first, then
    each other in the order the pages first ask for it: each change
    recreates a container or two, and the steps do not depend on one another
    except in reading order, which each group keeps.
    """
    page_steps = {name: steps(text) for name, text in pages.items()}
    found = [(name, number, step) for name, found_steps in page_steps.items()
             for number, step in enumerate(found_steps, 1)]
    states = list(dict.fromkeys([((), ()), *(_state(step) for _, _, step in found)]))
    printed: dict[tuple[str, int], list[list[str]]] = {}
    for name, number, step in sorted(found, key=lambda one: states.index(_state(one[2]))):
        use(step.servers, step.settings)
        printed[name, number] = run_step(step, port, env)
        say(f"tour: {name} step {number} ({len(step.commands)} commands) run")
    rewritten, differences, broken = {}, [], []
    for name, text in pages.items():
        pieces, last = [], 0
        for number, step in enumerate(page_steps[name], 1):
            got = printed[name, number]
            broken += [f"{name}, block {number}: the page says {claim}"
                       for claim in broken_claims(step.claims, got)]
            pieces += [text[last:step.span[0]], "".join(f"$ {command}\n" + "".join(f"{line}\n" for line in lines)
                                                        for command, lines in zip(step.commands, got))]
            last = step.span[1]
            for command, shown, lines in zip(step.commands, step.outputs, got):
                for line in shape_differences(shown, lines):
                    differences.append(f"{name}, block {number}, `{command}`: no longer prints a line like {line!r}")
        rewritten[name] = "".join(pieces) + text[last:]
    return rewritten, differences, broken


def _use_on_compose(servers: dict[str, str], settings: dict[str, str]) -> None:
    """Put the apps ``servers`` names on those servers, with ``settings`` (the rest as .env says), with compose."""
    # Every trace recorded: the steps read them, whatever .env or the shell sample.
    env = {**os.environ, **EVERY_TRACE, **settings,
           **{f"{app.upper()}_SERVER": server for app, server in servers.items()}}
    subprocess.run(["docker", "compose", "up", "-d", "--wait"], cwd=REPO, env=env, check=True,
                   capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsgilab.tour", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="put the outputs this run got into the page")
    parser.add_argument("--port", type=int, default=PAGE_PORT, help="nginx's port (default 8080)")
    args = parser.parse_args(argv)
    pages = {page.name: page.read_text() for page in PAGES}
    rewritten, differences, broken = run(pages, args.port, tour_environment(), _use_on_compose,
                                         lambda line: print(line, file=sys.stderr))
    _use_on_compose({}, {})
    if args.write:
        for page in PAGES:
            page.write_text(rewritten[page.name])
    for line in differences + broken:
        print(line)
    # --write takes the new outputs in; a broken claim is the lesson no longer happening, which no rewrite mends.
    return 1 if broken or (differences and not args.write) else 0


if __name__ == "__main__":
    sys.exit(main())
