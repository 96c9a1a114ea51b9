"""A lab waits for every worker to have the app by the servers' own lines; uWSGI's say which way it loads it."""

import json

from wsgilab import labs
from wsgilab.container.gunicorn_trace import WORKER_READY
from wsgilab.labs.worker_readiness import until_every_worker_serves


def _line(service, server, ts_us, message):
    return json.dumps({"hop": server, "event": "log", "service": service, "server": server, "pid": 7,
                       "ts_us": ts_us, "message": message})


def _uwsgi(service, lazy, workers=2, start_us=2_000_000_000_000_000):
    """uWSGI's lines as it starts: the app imported in the master, then the workers spawned; or (lazy-apps) the
    workers spawned, then each imports the app."""
    ready = [f"WSGI app 0 (mountpoint='/{service}') ready in 0 seconds on interpreter 0x1 pid: {8 + n} (default app)"
             for n in range(workers if lazy else 1)]
    spawned = [f"spawned uWSGI worker {n + 1} (pid: {8 + n}, cores: 1)" for n in range(workers)]
    messages = spawned + ready if lazy else ready + spawned
    return [_line(service, "uwsgi", start_us + n, message) for n, message in enumerate(messages)]


def _wait(lines, apps=("django",), since=0.0):
    target = labs.Target(port=1, log_lines=lambda: lines)
    return until_every_worker_serves(target, 2, since, deadline_s=0, apps=apps)


def test_uwsgi_importing_in_its_master_has_each_worker_ready_as_it_is_spawned():
    lines = _uwsgi("django", lazy=False)
    assert _wait(lines) == "every worker ready: django 2"
    assert _wait(lines[:2]) == "not every worker ready: django 1"  # the app, one worker spawned


def test_uwsgi_with_lazy_apps_has_a_worker_ready_only_once_it_imported_the_app():
    lines = _uwsgi("django", lazy=True)
    assert _wait(lines[:3]) == "not every worker ready: django 1"  # both spawned, one has imported the app
    assert _wait(lines) == "every worker ready: django 2"


def test_only_the_apps_asked_for_are_waited_for_and_only_lines_since_the_restart_count():
    lines = _uwsgi("django", lazy=False) + [_line("flask", "gunicorn", 2_000_000_000_000_100, WORKER_READY)]
    assert _wait(lines, apps=("django", "flask")) == "not every worker ready: django 2, flask 1"
    assert _wait(lines, apps=("django",)) == "every worker ready: django 2"
    assert _wait(lines, since=2_000_000_001.0) == "not every worker ready: django 0"
