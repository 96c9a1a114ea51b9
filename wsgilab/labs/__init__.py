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

from wsgilab.labs.kit import Report, Target

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
}


def run(name: str, target: Target) -> Report:
    """Run the lab called ``name`` against ``target``; its report says what it checked and found."""
    if name not in LABS:
        raise KeyError(f"no lab called {name!r}; there are: {', '.join(LABS)}")
    module = importlib.import_module(LABS[name])
    report = Report(name, module.TITLE, module.EXPLANATION.strip())
    module.run(target, report)
    return report
