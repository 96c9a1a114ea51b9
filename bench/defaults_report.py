"""bench/defaults_sweep.py's plots (SVG, matplotlib) and its page (docs/performance-defaults.md), from its rows.

Kept apart from the bench, as matrix_report is, so the sweep runs without
matplotlib; the plots are drawn from the measured rows only.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

from bench_output import processes
from matrix_report import _bars, _rate, _versions, plt


def _rows(rows: list[dict], **match: object) -> list[dict]:
    return [row for row in rows if all(row.get(key) == value for key, value in match.items())]


def plots(rows: list[dict], into: Path) -> dict[str, str]:
    """Draw the sweep's plots into ``into``; {file name: what it shows}."""
    into.mkdir(parents=True, exist_ok=True)
    drawn = {}
    sized = [row for row in rows if row["part"] in ("workers", "threads")]
    if sized:
        # Workers first (fewest to most), then threads: the x axis reads as the sweep did.
        by_size = sorted(sized, key=lambda r: (r["threads"], r["workers"]))
        labels = list(dict.fromkeys(row["config"] for row in by_size))
        endpoints = list(dict.fromkeys(row["endpoint"] for row in sized))
        fig, axes = plt.subplots(1, len(endpoints), figsize=(5.2 * len(endpoints), 3.8), squeeze=False)
        for ax, endpoint in zip(axes[0], endpoints):
            for server in dict.fromkeys(row["server"] for row in sized):
                for n, app in enumerate(dict.fromkeys(row["app"] for row in sized)):
                    found = {row["config"]: row["rps"]
                             for row in _rows(sized, server=server, app=app, endpoint=endpoint)}
                    ax.plot(labels, [found.get(label, float("nan")) for label in labels], marker="o", color=f"C{n}",
                            linestyle="-" if server == "gunicorn" else "--", label=f"{app}, {server}")
                    # The pool's row (gthread with nginx's kept-alive connections) beside its size's point.
                    for row in _rows(rows, part="pool", server=server, app=app, endpoint=endpoint):
                        size = f"{row['workers']} x {row['threads']}"
                        if size in labels:
                            ax.plot([size], [row["rps"]], marker="*", markersize=11, color=f"C{n}", linestyle="none",
                                    label=f"{app}, {server}, pool {row['config'].rsplit(' ', 1)[-1]}")
            ax.set_xlabel("workers x threads")
            ax.set_ylabel("requests/s (saturated)")
            ax.set_title(endpoint, fontsize=10)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(into / "workers-threads.svg")
        drawn["workers-threads.svg"] = "Throughput through nginx by workers x threads, tracing on"
    buffers = _rows(rows, part="buffers")
    if buffers:
        groups = list(dict.fromkeys(f"{row['app']}\n{row['server']}" for row in buffers))
        variants = list(dict.fromkeys(row["config"] for row in buffers))
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        shown = (("rps", "requests/s (saturated)"), ("nginx_cpu_us", "nginx CPU µs per request"))
        for ax, (field, label) in zip(axes, shown):
            values = {(f"{row['app']}\n{row['server']}", row["config"]): row[field] for row in buffers}
            _bars(ax, groups, {v: [values.get((g, v), 0.0) for g in groups] for v in variants}, label,
                  "1 MiB /download, nginx's buffering")
        fig.tight_layout()
        fig.savefig(into / "buffers.svg")
        drawn["buffers.svg"] = "A 1 MiB response under nginx's buffering variants"
    plt.close("all")
    return drawn


def write_report(rows: list[dict], args: argparse.Namespace, into: Path, page: Path | None) -> None:
    drawn = plots(rows, into)
    if page is None:
        return
    # The commands that measured the rows (a page may join two runs' rows), else this one.
    commands = list(dict.fromkeys(row["run"] for row in rows if "run" in row)) or \
        ["bench/defaults_sweep.py " + " ".join(sys.argv[1:])]
    rounds = max((row.get("rounds", 1) for row in rows), default=1)
    lines = ["# The defaults, swept", "",
             "<!-- Written by bench/defaults_sweep.py (--markdown) from the rows the commands below measured. -->", "",
             "Every row behind [Performance](performance.md#the-defaults-swept), which says what they mean and "
             "why the defaults are what they are.", "",
             f"Measured {datetime.date.today()} on this project's machine, {_versions('native')}; through nginx, "
             f"tracing on, {args.seconds:g} s per measurement, ab with {args.concurrency} keep-alive connections"
             + (f", each cell the median of {rounds} rounds (the req/s column gives the spread)" if rounds > 1 else "")
             + ". What each part varies: the docstring of bench/defaults_sweep.py; what it says: "
             "[Performance](performance.md#the-defaults-swept).", "",
             "```", *(f".venv/bin/python {command}" for command in commands), "```", ""]
    for name, what in drawn.items():
        lines += [f"![{what}]({os.path.relpath(into / name, page.parent)})", ""]
    lines += ["| part | workers x threads / variant | server | app | endpoint | req/s | p99 ms | open loop req/s | "
              "p99 ms | server µs/req | nginx µs/req | MiB, all workers | errors |",
              "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['part']} | {r['config']} | {r['server']} | {r['app']} | `{r['endpoint']}` | {_rate(r)} | "
                     f"{r['p99_ms']:.0f} | {r['open_loop_rps']:.0f} | {r['open_p99_ms']:.1f} | "
                     f"{r['server_cpu_us']:.0f} | {r['nginx_cpu_us']:.0f} | "
                     f"{r['rss_per_worker_mib'] * processes(r):.0f} | {r['errors'] + r['open_errors']} |")
    page.write_text("\n".join(lines) + "\n")
