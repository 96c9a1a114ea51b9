#!/usr/bin/env python3
"""Instructions per request of HopTrace's work, counted by valgrind's callgrind: the same count every run.

    apt-get install valgrind
    .venv/bin/python bench/trace_instructions.py                       # all three apps, about 7 minutes
    .venv/bin/python bench/trace_instructions.py --pieces --app raw    # and what each piece costs, about 4 minutes

``bench/trace_profile.py`` times one worker's request loop; on a shared
machine its figures move by a few microseconds between runs. This counts
the same loop's instructions instead (``trace_profile.py --serve-only SIDE``
under callgrind), which repeat exactly for the same code, inputs and
environment, whatever else the machine is doing. What it cannot see is the
kernel: a change that saves system calls (the batched writer) shows in the
timings, not here.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from trace_profile import APP_DIRS, PIECES

#: The loop that callgrind runs.
LOOP = Path(__file__).resolve().parent / "trace_profile.py"


def instructions_per_request(app: str, side: str, few: int = 200, many: int = 1200, without: str = "") -> int:
    """Instructions one request of ``side`` costs, from callgrind's totals for two run lengths.

    The difference of a run of ``many`` requests and one of ``few`` leaves out
    everything both runs do once (starting Python, importing the app, the warm-up).
    """
    def total(requests: int) -> int:
        done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                               str(LOOP), "--app", app, "--serve-only", side, "--requests", str(requests),
                               *(["--without", without] if without else [])],
                              capture_output=True, text=True, check=True)
        return int(re.search(r"Collected : (\d+)", done.stderr).group(1))

    return (total(many) - total(few)) // (many - few)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", choices=sorted(APP_DIRS), action="append",
                        help="the app to serve (repeatable; default: all three)")
    parser.add_argument("--pieces", action="store_true",
                        help="also what each piece of HopTrace's work costs, by counting the traced side with "
                             "that piece replaced by a constant")
    args = parser.parse_args()
    print("| app | off instructions/req | on instructions/req | tracing instructions/req | the wrapping alone |"
          "\n|---|---:|---:|---:|---:|")
    for app in args.app or sorted(APP_DIRS):
        off, on, wrapper = (instructions_per_request(app, side) for side in ("off", "on", "wrapper"))
        print(f"| {app} | {off:,} | {on:,} | {on - off:,} ({(on - off) / off:.0%} of off) | {wrapper - off:,} |",
              flush=True)
        if args.pieces:
            print(f"\n| {app}: piece of HopTrace | instructions/req |\n|---|---:|")
            for piece in PIECES:
                print(f"| {piece} | {on - instructions_per_request(app, 'on', without=piece):,} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
