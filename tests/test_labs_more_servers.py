"""The labs that state outcomes for Granian and Waitress, asserted on each (every app on one, then the other).

tests/test_labs.py runs every lab on gunicorn and uWSGI; a lab that names
more servers in its ``SERVERS`` runs here on those too, on the native tier
(the same nginx config and launcher as compose; only how the processes are
started differs), and every check it makes must pass. A lab that does not
name a server says so instead of running, which is tested last.
"""

from __future__ import annotations

import pytest
from lab_stacks import APPS, hop_log_lines

from wsgilab import labs

ONLY_TIERS = ("native",)
MORE_SERVERS = ("granian", "waitress")
#: The labs that state outcomes for at least one of MORE_SERVERS.
LABS_ON_MORE = [name for name in labs.LABS if set(labs.servers_of(name)) & set(MORE_SERVERS)]


def _run(stack, name: str) -> labs.Report:
    return labs.run(name, labs.Target(port=stack.port, log_lines=lambda: hop_log_lines(stack), control=stack))


@pytest.mark.parametrize("server", MORE_SERVERS, scope="module")
@pytest.mark.parametrize("name", LABS_ON_MORE)
def test_a_lab_that_names_the_server_passes_every_check_on_it(tier_stack, server, name):
    if server not in labs.servers_of(name):
        pytest.skip(f"{name} states no outcomes for {server}")
    tier_stack.use({app: server for app in APPS})
    report = _run(tier_stack, name)
    failed = [f"{c.what}: expected {c.expected}; saw {c.seen}" for c in report.checks if not c.ok]
    assert report.ok and report.checks, "\n".join(failed)
    assert any(f"on {server}" in c.what for c in report.checks), report.checks
    if name == "worker-timeout":  # no worker's clock: every app's view ran to its end, then nginx's 504
        assert sum("has no worker timeout" in c.expected for c in report.checks) == len(APPS)
        assert sum(c.seen.startswith("504") for c in report.checks) == len(APPS)
    if name == "slow-readers" and server == "waitress":  # under its own 16 MiB buffer, the thread is free at once
        assert sum("holds the response itself" in c.expected for c in report.checks) == len(APPS)


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
