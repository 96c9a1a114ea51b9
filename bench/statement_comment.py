#!/usr/bin/env python3
"""What the traceparent comment costs a statement: psycopg's own execute, with and without it.

    .venv/bin/python bench/statement_comment.py                    # 4 000 executes a side, 7 rounds
    .venv/bin/python bench/statement_comment.py --executes 10000 --rounds 9

A traced request's statements begin with a comment naming their query's
span, so PostgreSQL's own log line for each joins the request
(wsgilab.container.db_trace.commented). The comment is new for every
statement, so psycopg converts the statement's placeholders afresh instead
of from its cache, and never prepares it. This times one statement (the raw
app's list of the newest items, 20 rows fetched) on one connection, executed
and fetched N times a side, sides alternating in rounds, on a PostgreSQL of
the run's own that logs no statements (bench/own_database.py): the
process's CPU per statement (the client's work: psycopg, libpq, the socket)
and the wall clock's (which holds PostgreSQL's parse, plan and run, and the
waits for it). Sides:

- **plain**: the statement as the app writes it; psycopg prepares it after
  its fifth execute (``prepare_threshold``, 5 by default);
- **plain, never prepared**: ``prepare_threshold=None``;
- **one comment**: the same comment on every execute (prepared after five too);
- **a new comment each time**: as a traced request sends it;
- **placeholders converted**: psycopg's conversion of the commented text
  alone, uncached (``_query2pg_nocache``, psycopg's internal function): its
  share of the difference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import psycopg  # noqa: E402
from psycopg._queries import _query2pg_nocache  # noqa: E402

import own_database  # noqa: E402

sys.path.insert(0, str(REPO / "raw_wsgi_app"))
from raw_items import LIST  # noqa: E402

from wsgilab.trace_context import format_traceparent  # noqa: E402

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def commented(n: int) -> str:
    """The statement as the n-th traced query sends it: a comment of its own first."""
    return f"/*traceparent='{format_traceparent(TRACE, f'{n:016x}')}'*/ {LIST}"


SIDES: dict[str, tuple[Callable[[int], str], int | None]] = {
    "plain": (lambda n: LIST, 5),
    "plain, never prepared": (lambda n: LIST, None),
    "one comment": (lambda n: commented(1), 5),
    "a new comment each time": (commented, 5),
}


def timed(conninfo: dict[str, str], statement: Callable[[int], str], threshold: int | None,
          executes: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per execute and fetch of ``statement(n)``, after a warm-up on the same connection."""
    with psycopg.connect(**conninfo, prepare_threshold=threshold) as connection:
        cursor = connection.cursor()
        for n in range(200):
            cursor.execute(statement(n), (20,))
            cursor.fetchall()
        cpu, wall = time.process_time(), time.perf_counter()
        for n in range(executes):
            cursor.execute(statement(n), (20,))
            cursor.fetchall()
        return (time.process_time() - cpu) * 1e6 / executes, (time.perf_counter() - wall) * 1e6 / executes


def conversion_us(executes: int) -> float:
    """psycopg's placeholder conversion of a commented statement, uncached, µs each."""
    texts = [commented(n).encode() for n in range(executes)]
    began = time.process_time()
    for text in texts:
        _query2pg_nocache(text, "utf-8")
    return (time.process_time() - began) * 1e6 / executes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executes", type=int, default=4000, help="executes per side per round (default 4000)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds; the median is shown (default 7)")
    args = parser.parse_args()
    database, env = own_database.started({"raw": REPO / "raw_wsgi_app"})
    try:
        conninfo = {"host": env["WSGILAB_DB_HOST"], "port": env["WSGILAB_DB_PORT"], "dbname": env["WSGILAB_DB_NAME"],
                    "user": env["WSGILAB_DB_USER"],
                    "password": Path(env["WSGILAB_DB_PASSWORD_FILE"]).read_text().strip()}
        runs: dict[str, list[tuple[float, float]]] = {side: [] for side in SIDES}
        for round_ in range(args.rounds):
            order = list(SIDES)[round_ % len(SIDES):] + list(SIDES)[:round_ % len(SIDES)]
            for side in order:
                runs[side].append(timed(conninfo, *SIDES[side], args.executes))
        convert = statistics.median(conversion_us(args.executes) for _ in range(args.rounds))
    finally:
        own_database.stopped(database)
    plain = statistics.median(cpu for cpu, _ in runs["plain"])
    print(f"{args.executes} executes a side, median of {args.rounds} rounds, {os.cpu_count()} CPUs\n")
    print("| statement | CPU µs per statement | over plain | wall µs per statement |")
    print("|---|---:|---:|---:|")
    for side, measured in runs.items():
        cpu = statistics.median(c for c, _ in measured)
        wall = statistics.median(w for _, w in measured)
        print(f"| {side} | {cpu:.1f} | {cpu - plain:+.1f} | {wall:.1f} |")
    print(f"| placeholders converted, uncached (of the above) | {convert:.1f} | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
