"""When every worker of each app has the app: its server's own log lines, read by a lab before it measures.

A lab that restarts the apps and then needs each worker (two requests at
once on two workers, say) cannot go by the first answer: nginx's first 200
means one worker serves. Where the app is imported in each worker
(gunicorn's default, uWSGI's lazy-apps) the others may still be importing
it, seconds later. Each server says when a worker has the app:

- gunicorn: the line its post_worker_init hook writes for each worker
  (wsgilab.container.gunicorn_trace.WORKER_READY), whether the worker
  imported the app or inherited it from the master;
- uWSGI, the app imported in each worker (lazy-apps): each worker's own
  "WSGI app 0 (mountpoint='...') ready in N seconds"; imported in the
  master: that line is the master's, and each "spawned uWSGI worker N"
  after it is a worker that has the app from its first moment. Which of the
  two can be told from the log itself: a worker spawned before the app was
  first ready means each worker imports it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from wsgilab.container.gunicorn_trace import WORKER_READY
from wsgilab.labs.kit import APPS, Target, logged_since

SPAWNED, APP_READY = "spawned uWSGI worker", "WSGI app 0 (mountpoint="


def until_every_worker_serves(target: Target, workers: int, since: float, deadline_s: float = 30.0,
                              apps: Iterable[str] = APPS) -> str:
    """Wait until each of ``apps``' servers has logged, since ``since`` (epoch seconds), that ``workers`` workers
    have the app; at most ``deadline_s``. What was found: "every worker ready: django 2, ..." when every app's
    were, "not every worker ready: ..." when the deadline came first."""
    apps = tuple(apps)
    deadline = time.monotonic() + deadline_s
    while True:
        lines = logged_since(target, since, WORKER_READY, SPAWNED, APP_READY)
        ready = {app: _ready([line for line in lines if line.get("service") == app]) for app in apps}
        done = all(ready[app] >= workers for app in apps)
        if done or time.monotonic() > deadline:
            counts = ", ".join(f"{app} {ready[app]}" for app in apps)
            return f"{'every' if done else 'not every'} worker ready: {counts}"
        time.sleep(0.5)


def _ready(lines: list[dict[str, Any]]) -> int:
    """How many workers one app's server says have the app, from its lines (the module's docstring)."""
    messages = [str(line["message"]) for line in sorted(lines, key=lambda line: line.get("ts_us", 0))]
    spawned, app_ready = (next((n for n, m in enumerate(messages) if word in m), len(messages))
                          for word in (SPAWNED, APP_READY))
    imported_in_workers = spawned < app_ready
    return sum(_has_the_app(message, imported_in_workers) for message in messages)


def _has_the_app(message: str, imported_in_workers: bool) -> bool:
    """Whether a server's log line says one more worker has the app (the module's docstring)."""
    if WORKER_READY in message:
        return True
    if SPAWNED in message:
        return not imported_in_workers
    return imported_in_workers
