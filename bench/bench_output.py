"""What every bench whose result is rows shares: its output options, and measuring or reading back the rows.

Kept apart from bench/matrix.py, which measures, so that each bench module has one job.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a bench whose result is rows: how they are printed, drawn, or read back instead."""
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    parser.add_argument("--plots", metavar="DIR", help="write SVG plots there (needs requirements/bench.txt)")
    parser.add_argument("--markdown", metavar="FILE", help="write the page with the table and the plots")
    parser.add_argument("--from-json", metavar="FILE", help="measure nothing: the rows of an earlier --json run")


def measure_and_report(args: argparse.Namespace, run, heading: str, row, report: str, plots: str) -> int:
    """Measure the rows (``run``, each printed to stderr as it comes) or read them back (--from-json); print
    them (a table of ``row`` lines, or --json); with --plots or --markdown, hand them to ``report``'s
    write_report, a module of its own so that matplotlib is loaded only when asked for."""
    if args.from_json:
        rows = json.loads(Path(args.from_json).read_text())
    else:
        print("# " + heading.replace("µs", "us"), file=sys.stderr)
        rows = run(args)
    print(json.dumps(rows, indent=1) if args.json else "\n".join([heading, *map(row, rows)]))
    if args.plots or args.markdown:
        write_report = importlib.import_module(report).write_report
        write_report(rows, args, Path(args.plots or plots), Path(args.markdown) if args.markdown else None)
    return 0


def processes(row: dict) -> int:
    """How many processes a row's server ran: its workers, but Waitress's one (its threads are the workers)."""
    return 1 if row["server"] == "waitress" else row["workers"]
