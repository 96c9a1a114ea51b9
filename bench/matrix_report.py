"""bench/matrix.py's plots (SVG, matplotlib) and its page (docs/performance-matrix.md), from its rows.

Kept apart from the bench so the bench runs without matplotlib; the plots
are drawn from the measured rows only, never by hand.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402

#: The order the plots show the models in (bench/matrix.py's MODELS); a run's other models follow.
MODELS = ("gunicorn sync", "gunicorn gthread", "gunicorn over uwsgi", "uwsgi processes", "uwsgi threads", "granian",
          "waitress")


def _cells(rows: list[dict], **match: str) -> list[dict]:
    return [row for row in rows if all(row.get(key) == value for key, value in match.items())]


def _value(rows: list[dict], field: str, **match: str) -> float:
    found = _cells(rows, **match)
    return found[0][field] if found else 0.0


def _bars(ax, groups: list[str], series: dict[str, list[float]], ylabel: str, title: str) -> None:
    width = 0.8 / max(1, len(series))
    for n, (name, values) in enumerate(series.items()):
        ax.bar([g + n * width for g in range(len(groups))], values, width, label=name)
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))], groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)


def plots(rows: list[dict], into: Path) -> dict[str, str]:
    """Draw the four plots into ``into``; {file name: what it shows}."""
    into.mkdir(parents=True, exist_ok=True)
    apps = list(dict.fromkeys(row["app"] for row in rows))
    endpoints = list(dict.fromkeys(row["endpoint"] for row in rows))
    models = [m for m in MODELS if _cells(rows, model=m)] + sorted({row["model"] for row in rows} - set(MODELS))
    drawn = {}

    fig, axes = plt.subplots(1, len(endpoints), figsize=(4.2 * len(endpoints), 3.6), squeeze=False)
    for ax, endpoint in zip(axes[0], endpoints):
        _bars(ax, apps, {m: [_value(rows, "rps", app=a, model=m, endpoint=endpoint, via="nginx", tracing="off")
                             for a in apps] for m in models}, "requests/s (saturated)", endpoint)
    fig.tight_layout()
    fig.savefig(into / "throughput.svg")
    drawn["throughput.svg"] = "Throughput through nginx, saturated, tracing off, per worker model"

    fig, axes = plt.subplots(1, len(endpoints), figsize=(4.2 * len(endpoints), 3.6), squeeze=False)
    for ax, endpoint in zip(axes[0], endpoints):
        _bars(ax, apps,
              {m: [_value(rows, "open_p99_ms", app=a, model=m, endpoint=endpoint, via="nginx", tracing="off")
                   for a in apps] for m in models}, "p99 ms, open loop at half the saturated rate", endpoint)
        ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(into / "latency.svg")
    drawn["latency.svg"] = "p99 latency below saturation (open loop, half the saturated rate), tracing off"

    gunicorn = [m for m in models if m.startswith("gunicorn")]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    groups = [f"{a}\n{m.split()[1]}" for a in apps for m in gunicorn]
    _bars(ax, groups, {via: [_value(rows, "rps", app=a, model=m, endpoint=endpoints[0], via=via, tracing="off")
                             for a in apps for m in gunicorn] for via in ("direct", "nginx")},
          "requests/s (saturated)", f"{endpoints[0]}: gunicorn alone, and behind nginx")
    fig.tight_layout()
    fig.savefig(into / "nginx-hop.svg")
    drawn["nginx-hop.svg"] = "What the nginx hop costs: gunicorn alone against gunicorn behind nginx"

    fig, ax = plt.subplots(figsize=(8, 3.6))
    groups = [f"{a}\n{m.replace(' ', chr(10))}" for a in apps for m in models]
    _bars(ax, groups, {side: [_value(rows, "server_cpu_us", app=a, model=m, endpoint=endpoints[0], via="nginx",
                                     tracing=side) for a in apps for m in models] for side in ("off", "on")},
          "app server CPU µs per request", f"{endpoints[0]}: tracing off and on")
    ax.tick_params(axis="x", labelsize=6)
    fig.tight_layout()
    fig.savefig(into / "tracing.svg")
    drawn["tracing.svg"] = "What tracing costs the app server, CPU per request, tracing off and on"
    plt.close("all")
    return drawn


PACKAGES = ("gunicorn", "pyuwsgi", "granian", "waitress", "Django", "Flask")


def _versions(stack: str) -> str:
    """What ran: the host's nginx and this Python's packages (native), or the compose images' (compose)."""
    if stack == "compose":
        image = "wsgi-lab/{}:local"  # docker-compose.yml's names with the default WSGILAB_IMAGES and _TAG
        nginx = subprocess.run(["docker", "run", "--rm", "--entrypoint", "nginx", image.format("nginx"), "-v"],
                               capture_output=True, text=True).stderr.strip().split("/")[-1]
        show = ("import json, platform; from importlib import metadata as m; "
                "found = {d.metadata['Name']: d.version for d in m.distributions()}; "
                f"print(json.dumps({{'Python': platform.python_version(), "
                f"**{{n: found[n] for n in {PACKAGES!r} if n in found}}}}))")
        versions: dict[str, str] = {}
        for app in ("raw", "django", "flask"):  # each app's image holds its own framework
            done = subprocess.run(["docker", "run", "--rm", "--entrypoint", "python", image.format(app), "-c", show],
                                  capture_output=True, text=True)
            versions.update(json.loads(done.stdout or "{}"))
        python = ", ".join(f"{name} {version}" for name, version in versions.items())
        return (f"the compose stack's images: {python}, nginx {nginx}; {os.cpu_count()} CPUs, "
                f"{platform.machine()}, Linux {platform.release()}, Docker's bridge networks and json-file logs")
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    packages = ", ".join(f"{name} {metadata.version(name)}" for name in PACKAGES)
    return (f"the native stack: Python {platform.python_version()}, nginx {nginx}, {packages}; {os.cpu_count()} "
            f"CPUs, {platform.machine()}, Linux {platform.release()}")


def _rate(row: dict) -> str:
    """A row's throughput, with its rounds' range where it was measured more than once."""
    rounds = row.get("rps_rounds") or []
    return f"{row['rps']:.0f}" + (f" ({min(rounds):.0f}..{max(rounds):.0f})" if len(rounds) > 1 else "")


def write_report(rows: list[dict], args: argparse.Namespace, into: Path, page: Path | None) -> None:
    drawn = plots(rows, into)
    if page is None:
        return
    # The command that measures (a page redrawn from saved rows, --from-json, names it all the same).
    given = [arg for arg in sys.argv[1:] if arg != "--from-json" and not arg.endswith(".json")]
    # Spelled out where defaulted: the defaults change (endpoints were added), and this host's CPUs set the workers.
    given += [] if "--endpoints" in given else ["--endpoints", *args.endpoints]
    given += [] if "--workers" in given else ["--workers", str(args.workers)]
    command = "bench/matrix.py " + shlex.join(given)
    title = "# The benchmark matrix" + (", on the compose stack" if args.stack == "compose" else "")
    lines = [title, "",
             f"<!-- Written by `{command}`; the plots come from the same run. -->", "",
             "Every cell behind [Performance](performance.md#which-server-which-worker-model-the-matrix), "
             "which says what they mean, with the plots.", "",
             f"Measured {datetime.date.today()} on this project's machine, {_versions(args.stack)}; "
             f"{args.seconds:g} s per measurement, ab with {args.concurrency} keep-alive connections"
             + (f", each cell the median of {args.rounds} rounds (the req/s column gives the spread)"
                if getattr(args, "rounds", 1) > 1 else "") + ". "
             "What each column is: the docstring of bench/matrix.py.", "",
             "```", f".venv/bin/python {command}", "```", ""]
    for name, what in drawn.items():
        lines += [f"![{what}]({os.path.relpath(into / name, page.parent)})", ""]
    lines += ["| app | model | endpoint | via | tracing | req/s | p50 ms | p99 ms | open loop req/s | p50 ms | "
              "p99 ms | server µs/req | nginx µs/req | Docker µs/req | MiB/worker | errors |",
              "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        nginx, docker = (f"{r[key]:.0f}" if r.get(key) is not None else "-" for key in ("nginx_cpu_us", "docker_cpu_us"))
        lines.append(f"| {r['app']} | {r['model']} | `{r['endpoint']}` | {r['via']} | {r['tracing']} | "
                     f"{_rate(r)} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['open_loop_rps']:.0f} | "
                     f"{r['open_p50_ms']:.1f} | {r['open_p99_ms']:.1f} | {r['server_cpu_us']:.0f} | {nginx} | {docker} | "
                     f"{r['rss_per_worker_mib']:.1f} | {r['errors'] + r['open_errors']} |")
    page.write_text("\n".join(lines) + "\n")
