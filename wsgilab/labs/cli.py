"""``hoptrace lab``: run failure labs against the user's docker compose stack and print their reports.

    hoptrace lab list                      # what there is
    hoptrace lab host-and-proxy-headers    # one lab, against the stack on :8080 (--port to change)
    hoptrace lab all --json                # every lab, as JSON
    hoptrace lab slow-readers --explain    # what a lab does and shows, without a stack
    hoptrace lab rolling-update --stack wsgilab   # against the Docker Swarm stack scripts/swarm deploys

A report lists each check (what was done, what should happen, what did),
the traces of the requests the checks judged, and the lab's explanation.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from typing import Any

from wsgilab.hoptrace.records import events_of, scan
from wsgilab.hoptrace.compose_tool import compose_command, describe
from wsgilab.hoptrace.sources import (compose_container_ids, compose_logs, compose_project_name, project_log_lines,
                                      stack_log_lines)
from wsgilab.hoptrace.waterfall import render_waterfall
from wsgilab.labs import LABS, SERVER_NAMES, run, servers_of
from wsgilab.labs.control import ComposeControl, ControlError
from wsgilab.hoptrace.stack_logs import StackError
from wsgilab.labs.kit import DEFAULT_TRACE_FLUSH_MS, Report, Target
from wsgilab.labs.swarm_control import SwarmControl
from wsgilab.settings import EVERY_TRACE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hoptrace lab", description="Trigger a failure on purpose against the running stack, check what "
        "each hop did, show the traces, and explain which setting decides it.")
    parser.add_argument("name", choices=[*LABS, "all", "list"], help="which lab ('list' names them)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("WSGILAB_HTTP_PORT") or 8080),
                        help="nginx's published port (default: $WSGILAB_HTTP_PORT, else 8080)")
    parser.add_argument("--stack", metavar="NAME",
                        help="run against Docker Swarm stack NAME (scripts/swarm up deploys `wsgilab`), not the "
                             "current directory's compose project; `all` then runs the labs a swarm stack can")
    parser.add_argument("--traces", type=int, default=3, metavar="N",
                        help="print the traces of the first N checks (default 3)")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    parser.add_argument("--explain", action="store_true",
                        help="print what the lab does and what it shows, without running it (no stack needed)")
    return parser


def stacks_of(name: str) -> tuple[str, ...]:
    """The kinds of stack a lab runs on: "compose" (the default), "swarm", or both."""
    return getattr(importlib.import_module(LABS[name]), "STACKS", ("compose",))


def explain(name: str) -> str:
    """A lab's title and explanation, as ``hoptrace lab NAME --explain`` prints them."""
    module = importlib.import_module(LABS[name])
    return f"== lab {name}: {module.TITLE}\n\n{module.EXPLANATION.strip()}\n"


def _running_settings(control: ComposeControl | SwarmControl) -> dict[str, str]:
    """The running stack's settings; none if it is not running (the labs then say so)."""
    try:
        return control.running_settings()
    except (ControlError, subprocess.CalledProcessError):
        return {}


def _trace_flush_ms(running: dict[str, str]) -> int:
    """The running stack's WSGILAB_TRACE_FLUSH_MS, or the default."""
    value = running.get("WSGILAB_TRACE_FLUSH_MS") or ""
    return int(value) if value.isdigit() else DEFAULT_TRACE_FLUSH_MS


def not_every_trace(running: dict[str, str]) -> str:
    """Why the labs cannot run on a stack that records only some traces, or none ("" if it records every one)."""
    tracing = running.get("WSGILAB_TRACING") or "on"
    if tracing != "on":
        return (f"the stack runs with WSGILAB_TRACING={tracing}, and the labs read every request's trace: bring "
                "it up with WSGILAB_TRACING=on, the default")
    every = EVERY_TRACE["WSGILAB_TRACE_SAMPLE"]
    sample = running.get("WSGILAB_TRACE_SAMPLE") or every
    try:
        all_of_them = float(sample) >= float(every)
    except ValueError:
        all_of_them = False
    return "" if all_of_them else (
        f"the stack records {sample}% of the traces (WSGILAB_TRACE_SAMPLE={sample}), and the labs read every "
        f"request's trace: bring it up with WSGILAB_TRACE_SAMPLE={every}, the default")


def main(argv: list[str]) -> int:
    """``hoptrace lab NAME``: run failure labs against the stack of the current compose project."""
    args = _parser().parse_args(argv)
    if args.name == "list":
        for name, module in LABS.items():
            servers = ", ".join(SERVER_NAMES[server] for server in servers_of(name))
            print(f"{name:<24} {importlib.import_module(module).TITLE} [{servers}]")
        # On stderr: stdout stays one lab per line, for scripts.
        print("Each lab states its outcomes for the servers in brackets; with an app on another server it says so "
              "and stops (docs/servers.md).", file=sys.stderr)
        return 0
    if args.explain:
        print("\n".join(explain(name) for name in (LABS if args.name == "all" else [args.name])), end="")
        return 0
    if args.stack:
        control: ComposeControl | SwarmControl = SwarmControl(args.stack)
    else:
        try:
            compose = compose_command()
            control = ComposeControl(compose)
        except FileNotFoundError as error:
            print(f"hoptrace lab: {error}; the labs run against the docker compose stack", file=sys.stderr)
            return 2
    running = _running_settings(control)
    refused = not_every_trace(running)
    if refused:
        print(f"hoptrace lab: {refused}", file=sys.stderr)
        return 2
    if args.stack:
        target = Target(port=args.port, control=control, log_lines=lambda: stack_log_lines(args.stack))
        print(f"hoptrace lab: swarm stack {args.stack}; nginx on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    else:
        # The labs read the logs after almost every request: through docker logs
        # when the project's name is known (fast), else through compose.
        project = compose_project_name()
        target = Target(port=args.port, control=control, container_ids=compose_container_ids,
                        log_lines=(lambda: project_log_lines(project)) if project else (lambda: list(compose_logs())),
                        trace_flush_ms=_trace_flush_ms(running))
        # On stderr: the reports on stdout are what docs/labs/runs/ records.
        print(f"hoptrace lab: compose project {project or '(none running)'}, driven with {describe(compose)}; "
              f"nginx on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    reports = []
    kind = "swarm" if args.stack else "compose"
    for name in [n for n in LABS if kind in stacks_of(n)] if args.name == "all" else [args.name]:
        try:
            report = run(name, target)
        except (ControlError, StackError) as error:
            print(f"hoptrace lab {name}: could not change the stack: {error}", file=sys.stderr)
            return 2
        except OSError as error:
            print(f"hoptrace lab: cannot reach nginx on 127.0.0.1:{args.port} ({error}); "
                  "is the stack up (docker compose up -d)?", file=sys.stderr)
            return 2
        reports.append(report)
        if not args.json:
            print(render_report(report, target.log_lines() if args.traces else [], args.traces, target.found) + "\n",
                  flush=True)
    if args.json:
        print(json.dumps([{"name": r.name, "title": r.title, "ok": r.ok, "explanation": r.explanation,
                           "checks": [vars(c) for c in r.checks]} for r in reports], indent=2))
    return 0 if all(r.ok for r in reports) else 1


def render_report(report: Report, log_lines: list[str], traces: int,
                  found: dict[str, list[dict[str, Any]]] | None = None) -> str:
    """A lab's report as text: the checks, the first traces, then why.

    A trace comes from ``found`` (the records the lab judged it on) where it
    is there, else from ``log_lines``.
    """
    lines = [f"== lab {report.name}: {report.title}", ""]
    for check in report.checks:
        mark = "ok  " if check.ok else "FAIL"
        lines.append(f"  {mark} {check.what}")
        lines.append(f"       expected: {check.expected}")
        lines.append(f"       seen:     {check.seen}")
    # Each check's first request, once: two checks often judge the same one.
    shown = list(dict.fromkeys(check.request_ids[0] for check in report.checks if check.request_ids))[:traces]
    if shown:
        lines += ["", "traces:"]
        for request_id in shown:
            records = (found or {}).get(request_id) or scan(log_lines, request_id).records
            events = events_of(records)
            lines += ["  " + line for line in render_waterfall(request_id, events).splitlines()]
    lines += ["", "why:"] + ["  " + line for line in report.explanation.splitlines()]
    lines.append("")
    lines.append("result: " + ("every check passed" if report.ok else
                               f"{sum(not c.ok for c in report.checks)} check(s) failed"))
    return "\n".join(lines)
