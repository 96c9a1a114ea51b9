"""What WSGI_TIMEOUT bounds once a worker runs threads (WSGI_THREADS above 1): on gunicorn no request, on
uWSGI 2.0 a request only while no other request of its worker ends.

gunicorn times a worker, not a request: its arbiter ends a worker whose
heartbeat is older than `timeout`. A sync worker beats between requests only,
so a request longer than the timeout ends it (the worker-timeout lab). A
gthread worker beats from its own loop whatever its threads do, so a request
runs as long as it runs (gunicorn's docs: "not tied to the length of time
required to handle a single request").

uWSGI 2.0 keeps one harakiri deadline per worker (core/utils.c set_harakiri
writes uwsgi.workers[id].harakiri): a request that starts sets it, a request
that ends clears it (uwsgi_close_request), whichever thread ran either. So a
slow request alone is killed, and one beside a quicker request that ends on
the same worker runs on (uWSGI's master branch, unreleased, keeps a deadline
per thread). docs/settings.md and docs/servers.md say so; this holds them to it.
Native tier, where both run: the same on both, and it restarts its servers in seconds.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from lab_http import get
from lab_stacks import app_server_log_lines, lab_target

#: The view's own time, well past the limit the test sets.
VIEW_MS = 4000
TIMEOUT_S = "2"


@pytest.mark.once_on("native")
def test_a_request_past_wsgi_timeout_on_a_gthread_worker_runs_to_its_end(stack):
    if stack.server != "gunicorn":
        pytest.skip("gunicorn's gthread worker: the next test is uWSGI's")
    with lab_target(stack.stack).reconfigured({"WSGI_TIMEOUT": TIMEOUT_S, "WSGI_THREADS": "2"}):
        started = time.monotonic()
        reply = get(stack.port, f"/raw/slow?ms={VIEW_MS}", timeout=30)
        took = time.monotonic() - started
    # The gthread worker kept beating: nothing ended the request, which ran its whole 4 s.
    assert reply.status == 200 and took >= VIEW_MS / 1000, (reply.status, took)


#: Long enough that a kill, which uWSGI's master makes within a second or two of the deadline, cannot be mistaken for
#: the view's end.
KILLED_VIEW_MS = 8000


@pytest.mark.once_on("native")
def test_uwsgi_harakiri_is_one_deadline_per_worker_that_another_thread_ending_a_request_clears(stack):
    if stack.server != "uwsgi":
        pytest.skip("uWSGI's harakiri: the test before is gunicorn's")
    # One worker, two threads: every request below shares one worker, and so its one deadline.
    target = lab_target(stack.stack)
    with target.reconfigured({"WSGI_TIMEOUT": TIMEOUT_S, "WSGI_THREADS": "2", "WSGI_WORKERS": "1"}):
        kills_before = _harakiris(stack)
        started = time.monotonic()
        alone = get(stack.port, f"/raw/slow?ms={KILLED_VIEW_MS}", timeout=30)
        alone_took = time.monotonic() - started
        killed = _harakiris(stack, more_than=kills_before) - kills_before
        target.wait_until_served()  # the master has started a new worker
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(get, stack.port, f"/raw/slow?ms={VIEW_MS}", timeout=30)
            quick = []
            while not slow.done():  # a quick request on the other thread, over and over, until the slow one ends
                quick.append(get(stack.port, "/raw/", timeout=10).status)
                time.sleep(0.25)
            beside = slow.result()
    # Alone, the request held the worker's deadline, and the master killed the worker: nginx's 502, before its end.
    assert alone.status == 502 and alone_took < KILLED_VIEW_MS / 1000 and killed == 1, (alone.status, alone_took,
                                                                                         killed)
    # Beside it, each quick request ended and cleared the worker's one deadline: the slow one ran its whole 4 s, on
    # the worker that served the quick ones (a kill would have been a 502, and cut their run short).
    assert beside.status == 200 and set(quick) == {200}, (beside.status, quick)


def _harakiris(stack, more_than: int | None = None) -> int:
    """How many times uWSGI's master has said it killed a worker for its harakiri, so far; with ``more_than``,
    once the count is past it (the line may reach its file just after nginx's 502), or after 5 s."""
    deadline = time.monotonic() + 5
    while True:
        count = sum("HARAKIRI ON WORKER" in line for line in app_server_log_lines(stack.stack))
        if more_than is None or count > more_than or time.monotonic() > deadline:
            return count
        time.sleep(0.1)
