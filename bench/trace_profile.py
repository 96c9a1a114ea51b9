#!/usr/bin/env python3
"""Where HopTrace's cost per request goes: one worker's request loop, in process, timed and profiled.

    .venv/bin/python bench/trace_profile.py                      # all three apps, 20 000 requests a side
    .venv/bin/python bench/trace_profile.py --app raw --profile  # and cProfile's breakdown of the traced side
    .venv/bin/python bench/trace_instructions.py                 # the same loop's instructions (callgrind)
    .venv/bin/python bench/trace_profile.py --path items --sample 1   # on the database; and what sampling costs

``bench/tracing_overhead.py`` measures what tracing costs through nginx and a
real server, where a request's few tens of microseconds of tracing sit in
hundreds of microseconds of everything else, and the machine's noise is as
large as the difference. This measures the difference alone: it builds the
app as ``wsgilab.container.traced_app`` does and calls it as a server's
worker does (an environ with nginx's headers, ``start_response``, the body
iterated, ``close()``), N times per side, in one process, sides alternating
in rounds:

- **off**: what ``WSGILAB_TRACING=off`` serves (``WsgiErrorsToLog(app)``);
- **on**: ``HopTrace(WsgiErrorsToLog(app), response_header=server_timing_header)``, the default, its
  lines handed to a ``BatchedLineWriter`` as ``traced_app`` does (``--flush-ms``, default 50: a
  few lines per write());
- **on, each line at once**: the same, one write per line (``WSGILAB_TRACE_FLUSH_MS=0``);
- **wrapper**: off inside a middleware that wraps ``start_response`` and the
  body as any WSGI-level tracer must, and records nothing: what observing
  the protocol costs before a single event is kept;
- **floor**: off, plus one ready-made trace line of the same length written
  and flushed per request: what one JSON line per request costs, the least
  any tracing that writes a line per request can cost;
- **not sampled**: on, every request's traceparent flagged ``00`` (what
  ``WSGILAB_TRACE_SAMPLE=0`` makes nginx send): what HopTrace costs a
  request it does not record;
- **sampled**: on, one request in 100 / ``--sample`` flagged ``01`` and the
  others ``00``, evenly spread, as nginx's ``split_clients`` marks them on
  average: what ``WSGILAB_TRACE_SAMPLE`` costs.

``--path items`` calls each app's ``/items`` (a query per request) on a
PostgreSQL of its own, started for the run as the native test stack starts
one (tests/native_database.py) and set up by each app's own ``db_setup``;
the figures are then this process's CPU time (its threads' too), not the
wall clock, which would hold PostgreSQL's own work and the waits for it:
another process, sharing the same few CPUs.

Trace lines go to a pipe that another process drains, as a container's
stdout is a pipe to Docker's log reader. With ``--profile``, cProfile runs over the "on"
side and prints the functions of wsgilab by their own time per request (a
profiler adds its own cost to every call, so read it as shares, not as
microseconds). The server's own work (parsing, gunicorn's access line,
uWSGI's logvars) is not in it: the worker CPU figures of tracing_overhead.py
include it.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import own_database  # noqa: E402  (bench/, this script's own folder)
import worker_loop  # noqa: E402
from worker_loop import APP_DIRS, LAST_STATUS, PassThrough, drained_pipe, load, serve  # noqa: E402
from wsgilab.setting_values import SettingError, check_value  # noqa: E402

#: Pieces of HopTrace's work that --pieces replaces, one at a time, by a constant or nothing, to count what each
#: costs (the trace is then wrong: this is a measurement, never a setting).
PIECES = {
    "request id check": ("request_id_of", lambda environ: "0" * 32),
    "traceparent check": ("trace_of", lambda traceparent, request_id: ("1" * 32, "2" * 16)),
    "span ids": ("new_span_ids", lambda pid=0: ("3" * 16, "4" * 16)),
    "X-Request-Start parse": ("queue_start_us", lambda environ: 1_764_000_000_123_000),
    "the line built and written": ("RequestTrace.write", lambda self: None),
}


def _without(piece: str) -> None:
    """Replace one piece of HopTrace (a name in ``PIECES``) for this process."""
    from wsgilab.container import wsgi_trace

    target, stand_in = PIECES[piece]
    owner, _, name = target.rpartition(".")
    setattr(getattr(wsgi_trace, owner) if owner else wsgi_trace, name, stand_in)


#: The flush delay of the "on" side's BatchedLineWriter (--flush-ms).
FLUSH_MS = 50


def sides(app: str, out) -> dict:
    """The ways to serve ``app``: off, on (lines batched), on with each line at once (and the floor: off + a line)."""
    from wsgilab.container.log_lines import WsgiErrorsToLog
    from wsgilab.container.server_timing import server_timing_header
    from wsgilab.container.trace_writer import BatchedLineWriter
    from wsgilab.container.wsgi_trace import HopTrace

    bare = load(app)
    return {"off": WsgiErrorsToLog(bare), "wrapper": PassThrough(WsgiErrorsToLog(bare)),
            "on": HopTrace(WsgiErrorsToLog(bare), service=app, server="gunicorn",
                           write_line=BatchedLineWriter(out.fileno(), FLUSH_MS / 1000),
                           response_header=server_timing_header),
            "at once": HopTrace(WsgiErrorsToLog(bare), service=app, server="gunicorn", out=out,
                                response_header=server_timing_header)}


def trace_line_of(application, app: str) -> str:
    """One real trace line of ``app``, to write as the floor's."""
    captured: list[str] = []
    traced = application
    original, traced.write_line = traced.write_line, captured.append
    try:
        serve(application, app, 1, 1 << 60)
    finally:
        traced.write_line = original
    return captured[0]


def measure(app: str, requests: int, rounds: int, out, batch: int = 200) -> dict[str, float]:
    """Median over ``rounds`` of each side's µs per request.

    Within a round the sides take turns every ``batch`` requests, in a
    rotating order, so that what drifts over seconds (the garbage collector's
    generations, Django's caches, the other core's load) lands on every side
    alike; a side's round figure is its total time over its requests. The
    not-sampled and sampled sides are the on side's app, its requests flagged
    as ``shares`` says.
    """
    served = sides(app, out)
    line = trace_line_of(served["on"], app)
    serve(served["off"], app, 500, 0)  # warm up imports, caches and Django's first-request setup
    serve(served["on"], app, 500, 0)
    serve(served["at once"], app, 500, 0)
    serve(served["wrapper"], app, 500, 0)
    serve(served["on"], app, 500, 0, share=0)
    if not LAST_STATUS[0].startswith("2"):
        raise SystemExit(f"{app}'s {worker_loop.PATH} answered {LAST_STATUS[0]!r}: "
                         "the bench would time an error page")
    names = ["off", "on", "at once", "wrapper", "floor", "not sampled", "sampled"]
    # Both served by the on side: the share of requests flagged 01.
    shares = {"not sampled": 0, "sampled": worker_loop.SAMPLE}
    per_round: dict[str, list[float]] = {side: [] for side in names}
    for round_ in range(rounds):
        spent = dict.fromkeys(names, 0.0)
        for turn in range(requests // batch):
            for side in names[turn % len(names):] + names[:turn % len(names)]:
                first = (round_ * requests + turn * batch) * len(names)
                if side == "floor":
                    spent[side] += serve(served["off"], app, batch, first, line, out) * batch
                elif side in shares:
                    spent[side] += serve(served["on"], app, batch, first, share=shares[side]) * batch
                else:
                    spent[side] += serve(served[side], app, batch, first) * batch
        for side in names:
            per_round[side].append(spent[side] / (requests // batch * batch))
    result = {side: statistics.median(values) * 1e6 for side, values in per_round.items()}
    result["line_bytes"] = len(line)
    return result


def profile(app: str, requests: int, out, top: int) -> str:
    """cProfile over the traced side: wsgilab's functions by own time, per request."""
    served = sides(app, out)
    serve(served["on"], app, 500, 0)
    profiler = cProfile.Profile()
    profiler.runcall(serve, served["on"], app, requests, 0)
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = filename.replace(str(REPO) + "/", "")
        if "wsgilab" in where or name.startswith(("<built-in method posix", "<built-in method time", "<method 'write'",
                                                  "<method 'flush'", "<built-in method _json")):
            rows.append((own / requests * 1e6, calls / requests, cumulative / requests * 1e6,
                         f"{where}:{line}({name})"))
    rows.sort(reverse=True)
    lines = [f"{'own µs/req':>10} {'calls/req':>9} {'cum µs/req':>10}  function (cProfile, {requests} requests)"]
    lines += [f"{own:10.2f} {calls:9.1f} {cum:10.2f}  {where}" for own, calls, cum, where in rows[:top]]
    return "\n".join(lines)


def main() -> int:
    global FLUSH_MS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", choices=sorted(APP_DIRS), action="append",
                        help="the app to serve (repeatable; default: all three, each in a process of its own)")
    parser.add_argument("--requests", type=int, default=20000, help="requests per side per round (default 20000)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; the median is reported (default 5)")
    parser.add_argument("--profile", action="store_true", help="also print cProfile's breakdown of the traced side")
    parser.add_argument("--top", type=int, default=25, help="rows of the breakdown (default 25)")
    parser.add_argument("--row-only", action="store_true", help=argparse.SUPPRESS)  # one app's row, for the loop
    parser.add_argument("--flush-ms", type=int, default=FLUSH_MS,
                        help=f"the on side's WSGILAB_TRACE_FLUSH_MS (default {FLUSH_MS}; 0 makes it the same as "
                             "'at once')")
    parser.add_argument("--path", choices=("/", "items"), default="/",
                        help="the endpoint: / (default), or items: a query per request, on a PostgreSQL started "
                             "for the run")
    parser.add_argument("--sample", default="10", metavar="PERCENT",
                        help="the sampled side's share of requests flagged sampled, as WSGILAB_TRACE_SAMPLE "
                             "(default 10)")
    parser.add_argument("--serve-only", choices=("off", "on", "at once", "wrapper"),
                        help=argparse.SUPPRESS)  # for callgrind (bench/trace_instructions.py)
    parser.add_argument("--without", choices=sorted(PIECES), help=argparse.SUPPRESS)  # with --serve-only
    args = parser.parse_args()
    try:
        check_value("percent", "--sample", args.sample)
    except SettingError as error:
        parser.error(str(error))
    FLUSH_MS = args.flush_ms
    worker_loop.PATH, worker_loop.SAMPLE = "/" + args.path.strip("/"), round(float(args.sample) * 100)
    PATH = worker_loop.PATH
    apps = args.app or sorted(APP_DIRS)
    if args.serve_only:
        if PATH != "/":
            parser.error("--serve-only serves / (bench/trace_instructions.py counts it): leave --path out")
        if args.without:
            _without(args.without)
        served = sides(apps[0], drained_pipe())
        serve(served[args.serve_only], apps[0], args.requests, 0)
        return 0
    if not args.row_only:
        unit = "µs/req" if PATH == "/" else "CPU µs/req"
        print(f"| app | off {unit} | tracing µs/req (lines batched, {FLUSH_MS} ms) | tracing, each line at once | "
              f"the wrapping alone | one line written (the floor) | not sampled | {args.sample} % sampled | "
              "line bytes |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    database = None
    if PATH != "/" and not os.environ.get("WSGILAB_DB_HOST"):  # a host given: its tables already set up
        database, env = own_database.started({app: REPO / APP_DIRS[app] for app in apps})
        os.environ.update(env)  # for this process's app, or each app's process below
    try:
        if len(apps) > 1:  # each app in a fresh process: the frameworks do not share one well
            for app in apps:
                extra = ["--profile", "--top", str(args.top)] if args.profile else []
                subprocess.run([sys.executable, __file__, "--app", app, "--requests", str(args.requests),
                                "--rounds", str(args.rounds), "--flush-ms", str(FLUSH_MS), "--path", args.path,
                                "--sample", args.sample, "--row-only", *extra], check=True)
            return 0
        return _row(apps[0], args)
    finally:
        if database is not None:
            own_database.stopped(database)


def _row(app: str, args: argparse.Namespace) -> int:
    """Measure one app in this process, and print its row (and, with --profile, its breakdown)."""
    out = drained_pipe()
    figures = measure(app, args.requests, args.rounds, out)
    added = {side: figures[side] - figures["off"]
             for side in ("on", "at once", "wrapper", "floor", "not sampled", "sampled")}
    print(f"| {app} | {figures['off']:.1f} | {added['on']:+.1f} | {added['at once']:+.1f} | "
          f"{added['wrapper']:+.1f} | {added['floor']:+.1f} | {added['not sampled']:+.1f} | "
          f"{added['sampled']:+.1f} | {figures['line_bytes']} |", flush=True)
    if args.profile:
        print("\n" + profile(app, args.requests, out, args.top) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
