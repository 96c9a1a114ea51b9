"""The stack on Docker Swarm: scripts/swarm deploys it, three replicas each serve and are named, updates lose nothing.

One stack for the module (tests/swarm_stack.py), deployed on a one-node
swarm that scripts/swarm starts when the engine is in none; the last test
takes it down and checks that nothing is left. The tests run in file order.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter

import lab_http
import pytest
from lab_stacks import APPS

from wsgilab import labs
from wsgilab.hoptrace.records import events_of
from wsgilab.hoptrace.sources import stack_log_lines
from wsgilab.hoptrace.stack_logs import stack_lines
from wsgilab.labs.kit import replica_of
from wsgilab.swarm import engine

ONLY_TIERS = ("swarm",)


@pytest.fixture
def swarm(tier, request):
    """The swarm stack, every app on gunicorn (deployed by the first test that asks)."""
    stack = request.getfixturevalue("swarm_stack")
    stack.use({app: "gunicorn" for app in APPS})  # redeploys only where the servers differ
    return stack


def _listening(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp writes them) with a socket listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in open(table).read().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            if state == "0A" and local.endswith(f":{port:04X}"):
                found.add(local.rsplit(":", 1)[0])
    return found


def test_scripts_swarm_up_serves_every_app_through_nginx_published_on_loopback_only(swarm):
    for app in APPS:
        reply = lab_http.get(swarm.port, f"/{app}/")
        assert (reply.status, reply.json()["server"]) == (200, "gunicorn"), app
    # docker-proxy holds the published port: on 127.0.0.1 only, never on every address.
    assert _listening(swarm.port) == {"0100007F"}
    services = engine.stack_services(swarm.name)
    assert {name.split("_", 1)[1]: replicas for name, replicas in services.items()} == \
        {"django": "1/1", "flask": "3/3", "raw": "1/1", "nginx": "1/1", "db": "1/1"}


def test_every_app_answers_from_the_stacks_own_postgresql_and_each_query_is_traced(swarm):
    name = f"on swarm {uuid.uuid4().hex[:8]}"
    for app in APPS:
        posted = lab_http.request(swarm.port, "POST", f"/{app}/items", body=json.dumps({"name": name}).encode(),
                                  headers={"Content-Type": "application/json"})
        assert posted.status == 201, (app, posted.body)
        listed = lab_http.get(swarm.port, f"/{app}/items?limit=1")
        assert (listed.status, listed.json()["items"][0]["name"]) == (200, name), app
    records = swarm.target().records(listed.header("X-Request-ID"), {"nginx", "wsgi"})
    queries = [e for e in events_of(records) if e["event"] == "db_query"]
    assert queries and all(q.get("backend_pid") for q in queries)


def test_three_replicas_each_serve_and_every_trace_names_its_replica(swarm):
    ids = [lab_http.get(swarm.port, "/flask/").header("X-Request-ID") for _ in range(30)]
    records = swarm.target().records_of(ids, {"nginx", "wsgi"})
    served = Counter(replica_of(records.get(request_id, []), "flask") for request_id in ids)
    assert set(served) == set(swarm.control.replica_names("flask"))
    assert len(served) == 3
    shown = subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "--stack", swarm.name, "show", "--verbose",
                            ids[0]], capture_output=True, text=True)
    replica = replica_of(records[ids[0]], "flask")
    assert f"flask on gunicorn, replica {replica}" in shown.stdout.splitlines()[0]
    assert "through the Docker Engine API" in shown.stderr  # a one-node swarm: every task's container is here


def test_the_stacks_logs_read_by_its_labels_hold_every_line_docker_service_logs_prints(swarm):
    printed = Counter(line.rstrip("\n") for line in stack_lines(swarm.name))
    said: list[str] = []
    read = Counter(stack_log_lines(swarm.name, said.append))  # what the labs read, on this one-node swarm
    assert "through the Docker Engine API" in said[0]  # not docker service logs again, as a fallback would
    assert printed and not printed - read


def test_hoptrace_stats_over_a_stack_splits_by_replica(swarm):
    done = subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "stats", "--stack", swarm.name, "--json",
                           "--by-replica"], capture_output=True, text=True)
    rows = json.loads(done.stdout)["segments"]
    flask_workers = {row["replica"] for row in rows if row["service"] == "flask" and row["segment"] == "worker"}
    assert flask_workers == set(swarm.control.replica_names("flask"))


def test_a_rolling_update_under_load_fails_no_request_and_traces_move_to_the_new_replicas(swarm):
    report = labs.run("rolling-update", swarm.target())
    assert report.ok, "\n".join(f"{c.what}: {c.seen}" for c in report.checks)


def test_a_killed_replica_keeps_gets_going_and_never_repeats_a_post_on_swarm(swarm):
    report = labs.run("replica-down", swarm.target())
    assert report.ok, "\n".join(f"{c.what}: {c.seen}" for c in report.checks)
    # nginx's retry over HTTP: the compose tier runs this lab on uWSGI only where this tier runs (one_server_on).
    assert all(" on gunicorn" in c.what for c in report.checks), [c.what for c in report.checks]
    assert swarm.control.desired_replicas("flask") == 3


def test_a_redeploy_moves_every_app_to_uwsgi_and_nginx_follows(tier, swarm_stack):
    swarm_stack.use({app: "uwsgi" for app in APPS})  # waits until nginx speaks uwsgi to each app's uWSGI
    for app in APPS:
        reply = lab_http.get(swarm_stack.port, f"/{app}/")
        assert (reply.status, reply.header("X-Upstream-Protocol")) == (200, "uwsgi"), app


def _left_of(stack: str) -> tuple[list[str], list[str], list[str]]:
    """The stack's containers, networks and volumes still on the engine."""
    label = f"label=com.docker.stack.namespace={stack}"
    containers = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True)
    networks = subprocess.run(["docker", "network", "ls", "-q", "--filter", label], capture_output=True, text=True)
    volumes = subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"name={stack}_"],
                             capture_output=True, text=True)
    return containers.stdout.split(), networks.stdout.split(), volumes.stdout.split()


def test_scripts_swarm_down_keeps_the_data_and_with_volumes_leaves_nothing_behind(tier, swarm_stack):
    others = engine.containers_on_own_networks()
    others = [name for name in others if not name.startswith(f"{swarm_stack.name}_")]
    # Without --volumes: the stack goes, the database's data and the swarm holding its passwords stay.
    kept = swarm_stack.swarm("down")
    assert _left_of(swarm_stack.name) == ([], [], [f"{swarm_stack.name}_db-data"]), kept
    assert engine.swarm_state() == "active" and "its data" in kept and "is kept" in kept, kept
    said = swarm_stack.stop()
    # --volumes: the database's data and passwords went with it
    assert _left_of(swarm_stack.name) == ([], [], []) and "removed the database's data" in said
    started_by_scripts_swarm = swarm_stack.swarm_before in ("inactive", "ours")
    if started_by_scripts_swarm and others:  # left in place, and why
        assert engine.swarm_state() == "active" and "would cut Docker's DNS" in said
    elif started_by_scripts_swarm:  # the swarm scripts/swarm started, and its docker_gwbridge, are gone
        assert (engine.swarm_state(), engine.gwbridge()) == ("inactive", None)
    else:  # a swarm someone else started stays as it was
        assert engine.swarm_state() == swarm_stack.swarm_before and "left as it is" in said
