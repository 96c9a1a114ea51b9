"""What a lab may do to the stack's PostgreSQL: restart it, and read which sessions it is running.

This is a part of ``ComposeControl``, not of the ``StackControl`` every
stack implements (``hoptrace lab`` on a stack without a database cannot
do it): a lab that needs it looks for it (``getattr``) and says so where it
is missing. The tests' native stack has its own (tests/native_database.py).
The sessions come from ``pg_stat_activity``, read by ``psql`` in the db
container as the ``postgres`` superuser over the container's Unix socket,
which the official image and scripts/offline-images' stand-in both trust:
no password on a command line.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from wsgilab.hoptrace.docker_api import stamp_ns
from wsgilab.hoptrace.postgres_log import TRACEPARENT

#: The client sessions other than psql's own, as one JSON array.
SESSIONS_SQL = (
    "SELECT coalesce(json_agg(json_build_object('pid', pid, 'user', usename, 'app', application_name, 'state', state, "
    "'running_s', extract(epoch FROM clock_timestamp() - query_start), 'query', query)), '[]') "
    "FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")


@dataclass(frozen=True)
class Session:
    """One of PostgreSQL's client sessions: its backend, its state, and its last (or current) statement."""

    pid: int
    user: str
    #: Its ``application_name``: the app's service (django, flask, raw) for the apps' sessions.
    app: str
    #: active (running ``query`` now), idle, idle in transaction, ...
    state: str
    #: Seconds since ``query`` began.
    running_s: float | None
    query: str

    @property
    def trace_id(self) -> str:
        """The trace of the request whose statement this is; "" for an untraced one."""
        match = TRACEPARENT.match(self.query)  # the comment wsgilab.container.db_trace.commented writes
        return match["trace"] if match else ""


def sessions_from(said: str) -> list[Session]:
    """The sessions in what psql printed for SESSIONS_SQL."""
    return [Session(pid=row["pid"], user=row["user"] or "", app=row["app"] or "", state=row["state"] or "",
                    running_s=row["running_s"], query=row["query"] or "") for row in json.loads(said)]


#: How a lab reads PostgreSQL's sessions: a stack control's ``database_sessions``.
Sessions = Callable[[], list[Session]]


class DatabaseControl:
    """The database side of ``ComposeControl`` (wsgilab.labs.control, which provides ``run`` and ``container``,
    and which this imports only when called: it imports this)."""

    def restart_database(self) -> None:
        """``docker compose restart db``: the stop signal (SIGINT, PostgreSQL's fast shutdown), then a start."""
        from wsgilab.labs.control import STOP_GRACE_S

        self.run("restart", "-t", str(STOP_GRACE_S), "db")  # type: ignore[attr-defined]

    def database_sessions(self) -> list[Session]:
        """PostgreSQL's client sessions now (``pg_stat_activity``), psql's own left out."""
        db = self.container("db")  # type: ignore[attr-defined]
        done = subprocess.run(["docker", "exec", db, "psql", "--username", "postgres", "--no-psqlrc", "--tuples-only",
                               "--no-align", "--command", SESSIONS_SQL], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            from wsgilab.labs.control import ControlError

            raise ControlError(f"reading pg_stat_activity failed: {done.stderr.strip()[:500]}")
        return sessions_from(done.stdout)

    def database_healthchecks(self) -> list[tuple[float, float]]:
        """When the db container's last healthchecks ran, (start, end) in epoch seconds: Docker keeps the last 5.

        Each is a ``pg_isready``, whose ping holds one of PostgreSQL's session slots while it runs.
        """
        done = subprocess.run(["docker", "inspect", "--format", "{{json .State.Health.Log}}",
                               self.container("db")],  # type: ignore[attr-defined]
                              capture_output=True, text=True, timeout=30)
        return [(stamp_ns(check["Start"]) / 1e9, stamp_ns(check["End"]) / 1e9)
                for check in json.loads(done.stdout or "null") or []]
