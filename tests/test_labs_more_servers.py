"""The labs that state outcomes for Granian and Waitress, asserted on them (each lab once, both servers in it).

tests/test_labs.py runs every lab on gunicorn and uWSGI; a lab that names
more servers in its ``SERVERS`` runs here on those too, on the native tier
(the same nginx config and launcher as compose; only how the processes are
started differs), and every check it makes must pass. A lab that names both
runs once with both in the stack, each app on one of them; the apps swap
servers from one lab to the next, so each app meets each server. What these
labs show is the server's (its queue, its limits, its clock or none): each
server's outcome is asserted in every lab, on one or two apps. A lab that
does not name a server says so instead of running, which is tested last.
"""

from __future__ import annotations

import pytest
from lab_stacks import APPS, lab_target

from wsgilab import labs

ONLY_TIERS = ("native",)
MORE_SERVERS = ("granian", "waitress")
#: The labs that state outcomes for at least one of MORE_SERVERS.
LABS_ON_MORE = [name for name in labs.LABS if set(labs.servers_of(name)) & set(MORE_SERVERS)]
#: Those that state outcomes for both.
LABS_ON_BOTH = [name for name in LABS_ON_MORE if set(MORE_SERVERS) <= set(labs.servers_of(name))]


def _run(stack, name: str) -> labs.Report:
    return labs.run(name, lab_target(stack))


#: The two ways the apps sit on Granian and Waitress, lab after lab: over two labs, each app meets each server.
MIXED = ({"django": "granian", "flask": "waitress", "raw": "granian"},
         {"django": "waitress", "flask": "granian", "raw": "waitress"})


def _servers_for(name: str) -> dict[str, str]:
    """Where the apps run for lab ``name``: both servers (MIXED, alternating), or the one of them it names."""
    if name in LABS_ON_BOTH:
        return MIXED[LABS_ON_BOTH.index(name) % 2]
    return {app: next(server for server in MORE_SERVERS if server in labs.servers_of(name)) for app in APPS}


@pytest.mark.parametrize("name", LABS_ON_MORE)
def test_a_lab_that_names_granian_or_waitress_passes_every_check_on_each(tier_stack, name):
    servers = _servers_for(name)
    tier_stack.use(servers)
    report = _run(tier_stack, name)
    failed = [f"{c.what}: expected {c.expected}; saw {c.seen}" for c in report.checks if not c.ok]
    assert report.ok and report.checks, "\n".join(failed)
    for app, server in servers.items():
        assert any(f"/{app}/" in c.what and f"on {server}" in c.what for c in report.checks), (app, report.checks)
    if name == "worker-timeout":  # no worker's clock: every app's view ran to its end, then nginx's 504
        assert sum("has no worker timeout" in c.expected for c in report.checks) == len(APPS)
        assert sum(c.seen.startswith("504") for c in report.checks) == len(APPS)
    if name == "slow-readers":  # under its own 16 MiB buffer, Waitress's thread is free at once
        on_waitress = [app for app, server in servers.items() if server == "waitress"]
        assert sum("holds the response itself" in c.expected for c in report.checks) == len(on_waitress)


def test_a_lab_on_a_server_it_does_not_name_says_so_instead_of_running(tier_stack):
    unnamed = next(name for name in labs.LABS if "granian" not in labs.servers_of(name)
                   and "waitress" not in labs.servers_of(name))
    tier_stack.use({"django": "granian", "flask": "waitress", "raw": "gunicorn"})
    report = _run(tier_stack, unnamed)
    assert [(check.ok, check.seen) for check in report.checks] == [(False, "django on granian, flask on waitress")]


def test_full_listen_queue_refuses_granian_beside_gunicorn_whose_backlog_it_would_change(tier_stack):
    tier_stack.use({"django": "granian", "flask": "gunicorn", "raw": "gunicorn"})
    report = _run(tier_stack, "full-listen-queue")
    assert [(check.ok, check.seen) for check in report.checks] == [
        (False, "django on granian, flask on gunicorn, raw on gunicorn")]
