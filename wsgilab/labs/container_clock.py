"""When a container's server exited, on the labs' own clock: Docker records it, the lab's commands only wait.

``docker compose restart`` stops a container and starts it again in one
command, so the lab cannot see when the old server closed its socket, which
is when the requests still waiting in its listen queue fail (reload-and-stop).
Docker keeps that moment (``State.FinishedAt``, wall-clock time with
nanoseconds); this puts it on ``time.monotonic()``, the clock the labs time
requests by.
"""

from __future__ import annotations

import datetime
import re
import subprocess
import time


def exited_at(container: str) -> float:
    """When ``container``'s last process exited, as a ``time.monotonic()`` reading."""
    finished = subprocess.run(["docker", "inspect", "--format", "{{.State.FinishedAt}}", container],
                              capture_output=True, text=True, check=True).stdout.strip()
    return time.monotonic() - (time.time() - wall_clock_of(finished))


def wall_clock_of(stamp: str) -> float:
    """Seconds since the epoch of Docker's RFC 3339 time stamp (``2026-12-06T23:10:01.123456789Z``): its
    nanoseconds cut to the microseconds Python's datetime holds."""
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", stamp).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(trimmed).timestamp()
