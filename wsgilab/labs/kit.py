"""What every lab uses: the stack it runs against (``Target``), and the report it fills (``Report``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from wsgilab.hoptrace.records import parse_line, scan
from wsgilab.labs.control import StackControl
from wsgilab.labs.polling import read_until
from wsgilab.labs.rawhttp import exchange, request_bytes
from wsgilab.settings import SETTINGS

APPS = ("django", "flask", "raw")
#: The servers whose workers each listen on a socket of their own (SO_REUSEPORT; `ss -lntp` shows one per worker
#: PID) rather than on one their master holds: the kernel picks a worker for each connection by a hash, and
#: while every worker is dead nothing listens.
SOCKET_PER_WORKER = frozenset({"granian"})
#: How long a stack's workers hold a finished request's trace line unless it says otherwise (trace_writer.py).
DEFAULT_TRACE_FLUSH_MS = int(SETTINGS["WSGILAB_TRACE_FLUSH_MS"].default)
#: What a lab makes of the logs (Target.read_logs_until).
T = TypeVar("T")


@dataclass
class Target:
    """A running stack: nginx on ``port``, and a way to read every hop's log lines."""

    port: int
    log_lines: Callable[[], list[str]]
    host: str = "127.0.0.1"
    #: The stack's containers, when it runs under docker compose (labs about containers need it).
    container_ids: Callable[[], list[str]] | None = None
    #: What can restart or break the stack (wsgilab.labs.control). Labs that
    #: change how the stack runs need it; the others never touch it.
    control: StackControl | None = None
    #: The records each request id was judged on, kept as they were read: a lab
    #: that recreates containers takes their logs with them.
    found: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: The stack's WSGILAB_TRACE_FLUSH_MS: how long its workers may hold a finished request's trace line.
    trace_flush_ms: int = DEFAULT_TRACE_FLUSH_MS

    @contextmanager
    def reconfigured(self, settings: dict[str, str], serving: tuple[str, ...] = APPS) -> Iterator[None]:
        """Run the body with the stack restarted on ``settings``; the stack's own settings come back after,
        whatever happens.

        ``serving`` are the apps that must answer before the body runs (a lab
        that breaks one on purpose leaves it out).
        """
        try:
            self.reconfigure(settings, serving)
            yield
        finally:
            self.reconfigure({})

    def reconfigure(self, settings: dict[str, str], serving: tuple[str, ...] = APPS) -> None:
        """Restart the stack on ``settings`` (on top of its own), and wait until ``serving`` answer again."""
        self.control.reconfigure(settings)
        self.wait_until_served(apps=serving)

    def wait_until_served(self, deadline_s: float = 90.0, apps: tuple[str, ...] = APPS) -> None:
        """Wait until ``apps`` answer 200 through nginx (after a restart); TimeoutError if one never does."""
        deadline = time.monotonic() + deadline_s
        waiting = list(apps)
        while waiting:
            try:
                reply = exchange(self.port, request_bytes("GET", f"/{waiting[0]}/"), host=self.host, timeout=5)
                if reply.status == 200:
                    waiting.pop(0)
                    continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"/{waiting[0]}/ did not answer 200 through nginx within {deadline_s:.0f} s")
            time.sleep(0.1)  # each look is one request to nginx: cheap beside the restart it waits out

    def records(self, request_id: str, hops: set[str], wait_s: float = 5.0) -> list[dict[str, Any]]:
        """The log records of ``request_id``, once ``hops`` have all logged it (or ``wait_s`` passed)."""
        return self.records_of([request_id], hops, wait_s)[request_id]

    def records_of(self, request_ids: Iterable[str], hops: set[str],
                   wait_s: float = 5.0) -> dict[str, list[dict[str, Any]]]:
        """``records`` of many requests: the logs are read once per try, not once per request."""
        return self.records_each(dict.fromkeys(request_ids, hops), wait_s)

    def records_each(self, wanted: Mapping[str, set[str]], wait_s: float = 5.0) -> dict[str, list[dict[str, Any]]]:
        """``records_of`` where each request id waits for hops of its own (``wanted``: id -> hops)."""
        def read(lines: list[str]) -> tuple[dict[str, list[dict[str, Any]]], bool]:
            found: dict[str, list[dict[str, Any]]] = {request_id: [] for request_id in wanted}
            for record in scan(lines, wanted.keys()).records:  # one pass for every id
                names = {name for name in (record.get("request_id"), record.get("trace_id")) if isinstance(name, str)}
                for request_id in names & found.keys():
                    found[request_id].append(record)
            return found, all({r["hop"] for r in found[request_id]} >= wanted[request_id] for request_id in wanted)

        found = self.read_logs_until(read, wait_s)
        self.found.update(found)
        return found

    def read_logs_until(self, read: Callable[[list[str]], tuple[T, bool]], wait_s: float = 5.0) -> T:
        """What ``read`` makes of the logs once it says they hold everything (or ``wait_s`` passed).

        ``read`` takes the log lines and gives what it found and whether that
        is complete. Once it is, the logs are read once more after four
        WSGILAB_TRACE_FLUSH_MS (a worker holds a finished request's trace line
        that long), so the app side's lines are in even where only nginx's
        were waited for. It gives up only after a read that *began* ``wait_s``
        after the call: a stack's logs grow with every lab run on it, and one
        read of them can take seconds under load, so a read that began at once
        and ended after the deadline may predate the lines waited for.
        """
        deadline = time.monotonic() + wait_s

        def read_logs() -> tuple[T, bool]:
            return read(self.log_lines())

        found, complete = read_until(read_logs, lambda got: got[1], wait_s)
        if complete:
            time.sleep(4 * self.trace_flush_ms / 1000)
            found, _ = read_until(read_logs, lambda got: got[1], max(0.0, deadline - time.monotonic()))
        return found


@dataclass(frozen=True)
class Outcome:
    """One failure a lab shows, as its page and the index by status (docs/labs/) list it."""

    failure: str
    #: What the client gets, in words.
    client_sees: str
    #: Where the index files it: status codes ("502"), or "slow", "hang", "truncated body", "other".
    statuses: tuple[str, ...]
    hop: str
    #: The settings that decide it, for an app on gunicorn and on uWSGI ("the same" where they agree).
    gunicorn: str
    uwsgi: str
    #: The same for Granian, Waitress and uvicorn, in a lab that runs on them (its ``SERVERS``); "" where not.
    granian: str = ""
    waitress: str = ""
    uvicorn: str = ""


@dataclass
class Check:
    """One thing a lab did, what should have happened, and what did."""

    what: str
    expected: str
    seen: str
    ok: bool
    request_ids: list[str] = field(default_factory=list)


@dataclass
class Report:
    """What a lab did and found, and the explanation of it."""

    name: str
    title: str
    explanation: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def check(self, what: str, expected: str, seen: str, ok: bool, request_ids: list[str] | None = None) -> Check:
        """Record one check and return it."""
        done = Check(what, expected, seen, ok, [i for i in request_ids or [] if i])
        self.checks.append(done)
        return done


def requests_until(target: Target, path: str, until: float,
                   failed_pause_s: float = 0.0) -> list[tuple[float, int | str, float, str]]:
    """GETs of ``path`` back to back until ``until`` (monotonic), as one load client; a failed one waits
    ``failed_pause_s`` before the next.

    Each is (when sent, status or the error's name, seconds taken, nginx's request id or "").
    """
    sent = []
    while time.monotonic() < until:
        sent.append(one_request(target, path))
        if sent[-1][1] != 200:
            time.sleep(failed_pause_s)
    return sent


def one_request(target: Target, path: str) -> tuple[float, int | str, float, str]:
    """One GET of ``path``: when sent, status or the error's name, seconds taken, nginx's request id or ""."""
    started = time.monotonic()
    request_id = ""
    try:
        reply = exchange(target.port, request_bytes("GET", path), target.host, 30)
        status: int | str = reply.status
        request_id = reply.header("X-Request-ID") or ""
    except OSError as error:
        status = type(error).__name__
    return started, status, time.monotonic() - started, request_id


def served_between_failures(served: list[bool]) -> int:
    """How many of one load client's requests, in the order it sent them (one after another, so the order is
    certain), were served between its first failure and its last: 0 when its failures are one gap."""
    failed = [n for n, ok in enumerate(served) if not ok]
    return sum(served[failed[0]:failed[-1]]) if failed else 0


def has_control(target: Target, report: Report) -> bool:
    """Whether the lab can change the stack; if not, say so as a failed check."""
    if target.control is None:
        report.check("get hold of the stack", "a way to restart it and kill its workers",
                     "none: this lab needs `hoptrace lab` against docker compose, or the test stacks", False)
    return target.control is not None


def database_method(target: Target, report: Report, method: str, what: str) -> Any:
    """The stack control's ``method`` that reaches the database (wsgilab.labs.database_control for compose; the
    tests' native stack has its own), or None, said as a failed check of ``what`` the lab wanted to do."""
    if not has_control(target, report):
        return None
    found = getattr(target.control, method, None)
    if found is None:
        report.check(what, "a stack with a database it can reach (docker compose's db service)",
                     "this stack's control has no way to its database", False)
    return found


def nginx_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    """nginx's access-log record among a request's records ({} if nginx logged none)."""
    return next((r for r in records if r.get("hop") == "nginx" and r.get("event") == "request"), {})


def replica_of(records: list[dict[str, Any]], service: str) -> str:
    """The replica of ``service`` that served a request, from its app-side records ("" if none names one)."""
    return next((str(r["replica"]) for r in records if r.get("service") == service
                 and r.get("replica") not in (None, "", "-")), "")


def hops_of(records: list[dict[str, Any]]) -> set[str]:
    """Which hops logged these records."""
    return {str(record.get("hop")) for record in records}


def logged_since(target: Target, since: float, *words: str) -> list[dict[str, Any]]:
    """The hops' log records logged from ``since`` (epoch seconds) on whose line holds one of ``words``: what a
    server said about its workers, say, since a lab restarted it."""
    found = []
    for line in target.log_lines():
        if any(word in line for word in words):
            record = parse_line(line)
            if record and record.get("ts_us", 0) / 1e6 >= since:
                found.append(record)
    return found


def front_page(target: Target, app: str) -> tuple[int | None, dict[str, Any] | None]:
    """``app``'s front page now: its status, and its JSON (None where the body is not JSON)."""
    reply = exchange(target.port, request_bytes("GET", f"/{app}/"), host=target.host)
    try:
        said = json.loads(reply.body)
    except ValueError:
        said = None
    return reply.status, said if isinstance(said, dict) else None


def app_says(target: Target, app: str) -> dict[str, Any]:
    """What ``app``'s front page answers now ({} if it is not JSON): its ``server``, its ``interface`` on ASGI."""
    return front_page(target, app)[1] or {}


def served_by(target: Target, app: str) -> str:
    """Which server ``app`` runs on now, as the app itself reports it."""
    return app_says(target, app).get("server", "?")
