"""Lab: an app that fails to import. The server exits saying why, Docker restarts it, nginx answers 502."""

from __future__ import annotations

import re
import time
import uuid

from wsgilab.hoptrace.records import parse_line
from wsgilab.labs.kit import APPS, Outcome, Report, Target, has_control, served_by
from wsgilab.labs.rawhttp import exchange, request_bytes

TITLE = "App fails to import: the server exits saying why, it is restarted, nginx answers 502 meanwhile"

EXPLANATION = """
A deploy whose code cannot be imported (a dependency missing from the image,
a typo in <APP>_WSGI_APP, a settings module that raises) never serves a
request: its server exits saying why, Docker restarts it again and again,
and nginx answers 502 meanwhile (at worst a 504 at its connect timeout). The
other apps never notice.

The lab points the raw app at wsgilab.container.unimportable_app, which
imports a package that is not installed (RAW_WSGI_APP), and watches:
- gunicorn imports the app in each worker as it boots. The worker logs the
  traceback and exits with code 3, and the arbiter stops rather than fork
  failing workers forever: "Worker failed to boot.", exit status 3 (or 1,
  with the same reason twice, when a second worker's failure interrupts the
  shutdown: a long-standing gunicorn quirk).
- uWSGI imports it in the master, before it forks. `need-app = true` makes
  that fatal: "no app loaded. GAME OVER", exit status 22. Without need-app
  uWSGI would run on with no app, and answer every request with a 500.
- Docker (`restart: unless-stopped`) starts the container again, pausing
  twice as long each time (0.1 s, 0.2 s, 0.4 s, ... up to a minute).
- nginx looks the app's name up per request (resolver.conf): while the
  container is down Docker's DNS has no address for it, a 502 at once; while
  it boots, its server may already listen (gunicorn's master binds before
  its workers import the app) and resets the connection as it gives up, a
  502 a second or so later (1.15 s in the trace below). Only a request
  that comes in the second nginx still holds the address of a container
  that just died waits on that address: a 502 once the kernel gives up on
  it (about 4 s here), or a 504 at `proxy_connect_timeout` (5 s).
- The healthcheck never passes: Docker reports the container as "starting"
  (just restarted) or "unhealthy", never "healthy", and `docker compose ps`
  says "Restarting". Its log says why; nothing else does.
Then the lab puts the app back and it serves again, with no nginx restart.
"""

#: What the client sees in each failure this lab shows, and what decides it (docs/labs/).
OUTCOMES = (
    Outcome(
        failure="the app fails to import",
        client_sees="502, most at once, for as long as it is broken (a request in the second after a "
                    "crash, while nginx still holds the dead address: 502 or 504 after up to 5 s); "
                    "the other apps 200",
        statuses=("502", "504"),
        hop="the app server exits, Docker restarts it, nginx answers",
        gunicorn="the worker exits 3, the arbiter stops: \"Worker failed to boot.\" (exit 3, or 1 "
                 "when a second worker's failure interrupts it)",
        uwsgi="`need-app = true`: \"no app loaded. GAME OVER\", exit 22",
    ),
    Outcome(
        failure="... and its health",
        client_sees="never \"healthy\": \"starting\" after each restart, or \"unhealthy\"; `docker "
                    "compose ps` says Restarting",
        statuses=("other",),
        hop="Docker",
        gunicorn="`restart: unless-stopped`, the healthcheck (`python -m "
                 "wsgilab.container.healthcheck`)",
        uwsgi="the same",
    ),
)


APP = "raw"
BROKEN = "wsgilab.container.unimportable_app:application"
MISSING = "No module named 'wsgilab_lab_missing_dependency'"
#: What each server prints as it gives up, after the traceback.
GIVES_UP = {"gunicorn": "Worker failed to boot", "uwsgi": "no app loaded. GAME OVER"}
#: How long the lab watches the broken app, and how often it asks.
WATCH_S = 8.0
EVERY_S = 0.5
#: nginx's proxy_connect_timeout. Most 502s come at once (no address, or a
#: refused connection); a request sent in the second nginx still holds the
#: address of a container that just died waits on it: a 502 when the kernel
#: gives up on the address (about 4 s seen), or a 504 at this timeout.
CONNECT_TIMEOUT_S = 5.0


def _get(target: Target, path: str) -> tuple[int, float, str]:
    request_id = f"import-failure-{uuid.uuid4().hex[:16]}"
    started = time.monotonic()
    reply = exchange(target.port, request_bytes("GET", path, [("X-Request-ID", request_id)]), target.host, 15)
    return reply.status, time.monotonic() - started, request_id


def run(target: Target, report: Report) -> None:
    if not has_control(target, report):
        return
    server = served_by(target, APP)
    others = tuple(app for app in APPS if app != APP)
    broken: list[tuple[int, float, str]] = []
    healthy_others: list[int] = []
    states = []
    with target.reconfigured({f"{APP.upper()}_WSGI_APP": BROKEN}, serving=others):
        until = time.monotonic() + WATCH_S
        while time.monotonic() < until:
            broken.append(_get(target, f"/{APP}/"))
            healthy_others.append(_get(target, f"/{others[len(broken) % len(others)]}/")[0])
            states.append(target.control.app_state(APP))
            time.sleep(EVERY_S)
        log = target.control.app_state(APP).log
    # Ask once more after the defaults came back: nginx finds the app by itself.
    back = _get(target, f"/{APP}/")

    said = [line for line in _messages(log) if MISSING in line or GIVES_UP.get(server, "?") in line]
    exits = sorted({s.exit_code for s in states if s.exit_code not in (None, 0)})
    restarts = [s.restarts for s in states if s.restarts is not None]
    report.check(
        f"/{APP}/ on {server}, pointed at {BROKEN}",
        f"the server exits, and its log says why: {MISSING!r}, then {GIVES_UP.get(server)!r}",
        (f"log: {' | '.join(dict.fromkeys(_short(line) for line in said)) or 'neither line'}; "
         f"exit status seen: {', '.join(map(str, exits)) or 'none'}; "
         f"running at the end: {'yes' if states and states[-1].running else 'no'}"),
        any(MISSING in line for line in said) and any(GIVES_UP.get(server, "?") in line for line in said)
        and (bool(exits) or bool(restarts and max(restarts) > 0)))
    if restarts:
        report.check(
            f"the {APP} container, over {WATCH_S:.0f} s",
            "restarted again and again by Docker (restart: unless-stopped); its health never 'healthy'",
            f"restarts: {min(restarts)} -> {max(restarts)}; "
            f"health seen: {', '.join(dict.fromkeys(s.health for s in states))}",
            max(restarts) - min(restarts) >= 1 and max(restarts) >= 2
            and all(s.health != "healthy" for s in states))
    else:
        report.check(
            f"the {APP} server's healthcheck, over {WATCH_S:.0f} s (nothing restarts it here: no Docker)",
            "unhealthy every time",
            ", ".join(dict.fromkeys(_short(s.health) for s in states)),
            bool(states) and all(s.health.startswith("unhealthy") for s in states))
    statuses = sorted({status for status, _, _ in broken})
    slowest = max(took for _, took, _ in broken)
    report.check(
        f"GET /{APP}/ every {EVERY_S} s meanwhile ({len(broken)} requests)",
        f"502 from nginx; a request that came while nginx still held the address of the container "
        f"that had just died waits on it: a 502 when the kernel gives up on the address, a 504 at "
        f"proxy_connect_timeout ({CONNECT_TIMEOUT_S:.0f} s: from {CONNECT_TIMEOUT_S - 0.5:.1f} to under "
        f"{CONNECT_TIMEOUT_S + 0.5:.1f} s), whichever comes first; nothing slower",
        f"{', '.join(f'{sum(1 for b in broken if b[0] == st)} x {st}' for st in statuses)}; slowest {slowest:.2f} s",
        502 in statuses and set(statuses) <= {502, 504} and slowest < CONNECT_TIMEOUT_S + 0.5
        and all(took >= CONNECT_TIMEOUT_S - 0.5 for status, took, _ in broken if status == 504),
        [broken[0][2], broken[-1][2]])
    for request_id in (broken[0][2], broken[-1][2]):
        target.records(request_id, {"nginx"}, wait_s=2)
    report.check(
        f"/{' and /'.join(others)}/ meanwhile ({len(healthy_others)} requests)",
        "200 every time: one app's failure stays its own",
        ", ".join(f"{healthy_others.count(s)} x {s}" for s in sorted(set(healthy_others))),
        set(healthy_others) == {200})
    report.check(
        f"/{APP}/ once {APP.upper()}_WSGI_APP is back to the app's own",
        "200, with nginx as it was: the lab never reloads or restarts it",
        f"{back[0]}",
        back[0] == 200,
        [back[2]])
    target.records(back[2], {"nginx"}, wait_s=2)


def _messages(log: str) -> list[str]:
    """The server's log as text: a JSON record (gunicorn's log lines) by its message and traceback's last line."""
    found = []
    for line in log.splitlines():
        record = parse_line(line)
        if record is None:
            found.append(line.split(" | ", 1)[-1].strip())  # docker compose's "raw_1  | " prefix
        else:
            found.append(str(record.get("message", "")))
            found.extend(str(record.get("traceback", "")).strip().splitlines()[-1:])
    return found


def _short(line: str, limit: int = 110) -> str:
    line = re.sub(r"\s+", " ", line)
    return line if len(line) <= limit else line[: limit - 1] + "…"
