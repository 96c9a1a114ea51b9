"""Failure labs: trigger a failure on purpose, watch which hop acts, and read why.

Each lab is a module here with a ``TITLE``, an ``EXPLANATION`` (which hop
acted, and which setting decides it) and ``run(target, report)``, which
sends real requests to a running stack through nginx, reads the hops' logs,
and records each check in the report. ``hoptrace lab NAME`` (``cli``) runs
one against the stack ``docker compose up`` started and prints the report
with the traces; the tests run the very same labs against their stacks and
assert on the report, so a lab is also a reliability or security test.

``kit`` holds what every lab uses (the target stack, the report),
``control`` how a lab changes the stack, ``rawhttp`` the raw HTTP bytes the
labs send.
"""

from __future__ import annotations

import importlib

from wsgilab.labs.kit import APPS, Report, Target, front_page

#: The servers whose outcomes a lab states unless its module names more (``SERVERS``); on another server a lab
#: says so instead of running.
LAB_SERVERS = ("gunicorn", "uwsgi")
#: How the docs and reports name each server.
SERVER_NAMES = {"gunicorn": "gunicorn", "uwsgi": "uWSGI", "granian": "Granian", "waitress": "Waitress",
                "uvicorn": "uvicorn"}

#: Lab name -> module, in the order the README lists them.
LABS = {
    "forged-id": "wsgilab.labs.forged_id",
    "oversized-input": "wsgilab.labs.oversized_input",
    "host-and-proxy-headers": "wsgilab.labs.host_and_proxy_headers",
    "malformed-requests": "wsgilab.labs.malformed_requests",
    "exposure": "wsgilab.labs.exposure",
    "worker-timeout": "wsgilab.labs.worker_timeout",
    "killed-worker": "wsgilab.labs.killed_worker",
    "queueing": "wsgilab.labs.queueing",
    "full-listen-queue": "wsgilab.labs.full_listen_queue",
    "reload-and-stop": "wsgilab.labs.reload_and_stop",
    "slow-clients": "wsgilab.labs.slow_clients",
    "slow-readers": "wsgilab.labs.slow_readers",
    "import-failure": "wsgilab.labs.import_failure",
    "replica-down": "wsgilab.labs.replica_down",
    "rolling-update": "wsgilab.labs.rolling_update",
    "n-plus-one": "wsgilab.labs.n_plus_one",
    "database-restart": "wsgilab.labs.database_restart",
    "slow-query": "wsgilab.labs.slow_query",
    "too-many-clients": "wsgilab.labs.too_many_clients",
    "connection-before-fork": "wsgilab.labs.connection_before_fork",
    "long-requests": "wsgilab.labs.long_requests",
    "sync-in-async": "wsgilab.labs.sync_in_async",
    "websocket": "wsgilab.labs.websocket",
}


def run(name: str, target: Target) -> Report:
    """Run the lab called ``name`` against ``target``; its report says what it checked and found."""
    if name not in LABS:
        raise KeyError(f"no lab called {name!r}; there are: {', '.join(LABS)}")
    module = importlib.import_module(LABS[name])
    report = Report(name, module.TITLE, module.EXPLANATION.strip())
    servers = servers_of(name)
    others, unread = _front_pages(target, servers)
    if others:
        report.check("which servers the apps run on", f"{named(servers)}: the servers this lab's outcomes are "
                     "stated for (docs/servers.md)",
                     ", ".join(f"{app} on {server}" for app, server in others.items()), False)
        return report
    if unread:
        report.check("the apps answer in JSON", "each app's front page a JSON object, as the labs read the apps' "
                     "answers; a middleware that changes bodies (RAW_WSGI_MIDDLEWARE=footer:appended, "
                     "docs/middleware.md) is taken off with `docker compose up -d`",
                     ", ".join(f"{app}: {status} with a body that is not JSON" for app, status in unread.items()),
                     False)
        return report
    module.run(target, report)
    return report


def servers_of(name: str) -> tuple[str, ...]:
    """The servers the lab called ``name`` states outcomes for, and so runs on."""
    return getattr(importlib.import_module(LABS[name]), "SERVERS", LAB_SERVERS)


def named(servers: tuple[str, ...]) -> str:
    """``servers`` as the docs name them: "gunicorn, uWSGI or Granian"."""
    names = [SERVER_NAMES[server] for server in servers]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _front_pages(target: Target, servers: tuple[str, ...]) -> tuple[dict[str, str], dict[str, int]]:
    """What each app's front page says before a lab runs: the apps on a server the lab has no outcomes for, and
    which; and the apps that answer 200 with a body the labs cannot read as JSON, with that status. An app that
    does not answer, or answers an error, is the lab's own business (a stack not up yet, a lab that breaks it)."""
    others, unread = {}, {}
    for app in APPS:
        try:
            status, said = front_page(target, app)
        except OSError:
            continue
        if said is None:
            if status == 200:
                unread[app] = status
            continue
        server = said.get("server", "?")
        if server not in servers and server != "?":
            others[app] = server
    return others, unread
