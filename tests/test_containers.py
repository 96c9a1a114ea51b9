"""What the compose stack promises about its containers: non-root, healthy, only nginx published;
and that hoptrace finds a request in the project's own `docker compose logs`.

Compose tier only, in both phases (all apps on gunicorn, all on uWSGI), so the
uwsgi socket is checked as well as gunicorn's port; and the database lab
whose outcome is Docker's (database-restart: tests/test_database_labs.py has
the others), once, with both servers in the stack (``BOTH_SERVERS``).
"""

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from lab_http import get, request
from lab_stacks import APPS, BOTH_SERVERS, REPO, hop_log_lines, lab_target

from wsgilab import labs
from wsgilab.hoptrace import records as hoplog
from wsgilab.hoptrace.waterfall import render_waterfall
from wsgilab.labs import control
from wsgilab.labs.around_nginx import process_uids, services
from wsgilab.labs.polling import read_until

ONLY_TIERS = ("compose",)



def test_every_service_reports_healthy(stack):
    stack.stack.wait_until_healthy()  # within 90 s of its (re)start: nginx's first check comes 2 s in
    containers = services(stack.stack.container_ids())
    assert sorted(containers) == ["db", "django", "flask", "nginx", "raw"]
    for service, container in containers.items():
        assert container["State"]["Health"]["Status"] == "healthy", service


def test_every_container_runs_as_a_non_root_user(stack):
    for service, container in services(stack.stack.container_ids()).items():
        if service == "db":  # the postgres image starts as root to prepare its data, then runs as postgres
            uids = process_uids(container["Id"], "postgres")
            assert uids and "0" not in uids, uids
            continue
        assert container["Config"]["User"] not in ("", "root", "0"), service
        uid = subprocess.run(["docker", "exec", container["Id"], "id", "-u"],
                             capture_output=True, text=True, check=True).stdout.strip()
        assert uid != "0", service


def test_only_nginx_is_published_and_only_on_loopback(stack):
    for service, container in services(stack.stack.container_ids()).items():
        bindings = {port: hosts for port, hosts in (container["NetworkSettings"]["Ports"] or {}).items() if hosts}
        if service == "nginx":
            assert list(bindings) == ["8080/tcp"]
            assert [(h["HostIp"], h["HostPort"]) for h in bindings["8080/tcp"]] == [("127.0.0.1", str(stack.port))]
        else:
            # gunicorn's 8000 and uWSGI's 3031 are exposed to the compose network, never to the host.
            assert bindings == {}, service


def test_nginx_reuses_its_time_wait_ports_towards_the_apps(stack):
    # Without it, a sustained load fills nginx's port range with TIME_WAIT
    # sockets across the bridge network (bench/sustained_load.py).
    nginx = services(stack.stack.container_ids())["nginx"]
    assert nginx["HostConfig"]["Sysctls"] == {"net.ipv4.tcp_tw_reuse": "1"}
    inside = subprocess.run(["docker", "exec", nginx["Id"], "cat", "/proc/sys/net/ipv4/tcp_tw_reuse"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert inside == "1"


def test_hoptrace_reads_docker_compose_logs_itself(stack):
    """`hoptrace show --compose ID` runs `docker compose logs` for the project it is pointed at."""
    request_id = "compose-logs-" + uuid.uuid4().hex
    assert get(stack.port, "/raw/", headers={"X-Request-ID": request_id}).status == 200
    env = {**os.environ, "COMPOSE_PROJECT_NAME": stack.stack.project}

    def show():
        shown = subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "show", "--compose", "--json", request_id],
                               capture_output=True, text=True, cwd=REPO, env=env, stdin=subprocess.DEVNULL)
        return shown, json.loads(shown.stdout)["events"] if shown.returncode == 0 else []

    # Each try runs hoptrace (a second or so under load): as long as the twenty tries it once had.
    shown, events = read_until(show, lambda shown_events: {"response_sent", "close"} <= {
        e["event"] for e in shown_events[1]}, wait_s=10)
    assert {e["hop"] for e in events} >= {"nginx", "wsgi", stack.server}, shown.stderr


def test_exposure_lab_finds_only_nginx_published_non_root_no_secret_and_uwsgi_guarded(stack):
    target = labs.Target(port=stack.port, log_lines=lambda: hop_log_lines(stack.stack),
                         container_ids=stack.stack.container_ids)
    report = labs.run("exposure", target)
    assert report.ok, [f"{c.what}: {c.seen}" for c in report.checks if not c.ok]
    secrets = [c for c in report.checks if c.what.endswith("/environ")]
    assert len(secrets) == 3 and all(c.seen.endswith(" 0 shown") for c in secrets)
    assert not secrets[0].seen.startswith("200; 0 secret")  # django has DJANGO_SECRET_KEY set
    guarded = [c for c in report.checks if "UWSGI_FILE" in c.what]
    assert len(guarded) == (3 if stack.server == "uwsgi" else 0)


def test_the_lab_control_reads_the_settings_the_stack_runs_with_off_its_containers(stack):
    # so a lab that recreates containers keeps settings given in the shell, not only those in .env
    found = control.ComposeControl(stack.stack.compose, stack.stack.project).running_settings()
    assert {found[f"{app.upper()}_SERVER"] for app in ("django", "flask", "raw")} == {stack.server}
    assert found["WSGILAB_HTTP_PORT"] == str(stack.port)
    assert found["WSGI_WORKERS"] == "2"
    assert found["WSGILAB_DB_MAX_CONNECTIONS"] == "100"


def test_scaled_replicas_share_the_load_and_each_trace_names_its_replica(tier_stack):
    """`docker compose up --scale flask=3`: nginx spreads requests over the three, and the traces tell them apart."""
    tier_stack.use(tier_stack.servers or {app: "gunicorn" for app in APPS})
    try:
        tier_stack.run("up", "-d", "--no-recreate", "--scale", "flask=3", "--wait", "flask")
        listed = subprocess.run(["docker", "ps", "--filter", f"label=com.docker.compose.project={tier_stack.project}",
                                 "--filter", "label=com.docker.compose.service=flask", "--format", "{{.ID}}"],
                                capture_output=True, text=True, check=True).stdout.split()
        hostnames = {json.loads(subprocess.run(["docker", "inspect", "--format", "{{json .Config.Hostname}}", cid],
                                               capture_output=True, text=True, check=True).stdout)
                     for cid in listed}
        assert len(hostnames) == 3
        ids = [get(tier_stack.port, "/flask/").header("X-Request-ID") for _ in range(30)]
        time.sleep(1.0)  # every hop has written its line
        lines = hop_log_lines(tier_stack)
        served = {}
        for request_id in ids:
            events = hoplog.events_of(hoplog.scan(lines, request_id).records)
            served[request_id] = {e.get("replica") for e in events if e["hop"] == "wsgi"}
        assert all(len(replicas) == 1 for replicas in served.values()), served
        seen = set().union(*served.values())
        # nginx's resolver answers with the three addresses, in turn: 30 requests reach more than one.
        assert seen <= hostnames and len(seen) >= 2, (seen, hostnames)
        log = "\n".join(lines)
        done = subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "stats", "--by-replica", "--json"],
                              input=log, capture_output=True, text=True, check=True)
        rows = json.loads(done.stdout)["segments"]
        assert {row["replica"] for row in rows if row["service"] == "flask" and row["segment"] == "app"} >= seen
    finally:
        tier_stack.run("up", "-d", "--no-recreate", "--scale", "flask=1", "flask")


#: A stand-in for a replica whose server fails a request it was sent: it reads the request, prints
#: its method and X-Request-ID, and closes the connection without an answer (nginx: "upstream
#: prematurely closed connection").
DROPS_EACH_REQUEST = """
import re, socket
listener = socket.create_server(("0.0.0.0", 8000), backlog=64)
while True:
    connection, _ = listener.accept()
    head = b""
    while b"\\r\\n\\r\\n" not in head and (piece := connection.recv(65536)):
        head += piece
    head = head.decode("latin-1")
    found = re.search(r"^x-request-id: *(\\S+)", head, re.I | re.M)
    print("received", head.split(" ", 1)[0], found.group(1) if found else "-", flush=True)
    connection.close()
"""


def test_a_get_a_replica_fails_is_retried_on_another_and_a_post_it_was_sent_never_is(tier_stack):
    """nginx's `proxy_next_upstream error timeout` (its default): a GET moves on, a POST that was sent does not."""
    servers = {app: "gunicorn" for app in APPS}
    tier_stack.use(servers)
    odd = f"{tier_stack.project}-flask-failing"
    tier_stack.run("run", "-d", "--no-deps", "--use-aliases", "--name", odd, "flask", "python", "-c",
                   DROPS_EACH_REQUEST, servers=servers)
    try:
        time.sleep(1.0)  # it listens
        gets = {reply.header("X-Request-ID"): reply for reply in (get(tier_stack.port, "/flask/") for _ in range(16))}
        posts = {reply.header("X-Request-ID"): reply for reply in
                 (request(tier_stack.port, "POST", "/flask/upload", body=b"x" * 100) for _ in range(16))}
        time.sleep(1.0)  # every hop has written its line
        # What it was sent through nginx (its own healthcheck's requests, from inside, carry no id).
        received = [words for words in (line.split() for line in subprocess.run(
                        ["docker", "logs", odd], capture_output=True, text=True).stdout.splitlines())
                    if words[:1] == ["received"] and words[-1] != "-"]
        lines = hop_log_lines(tier_stack)

        def served_by_the_app(request_id):
            return any(r["hop"] == "wsgi" for r in hoplog.scan(lines, request_id).records)

        # Each request's first try goes to either address (nginx's resolver rotates them): about half
        # of them meet the failing one.
        got_gets = {request_id for _, method, request_id in received if method == "GET"}
        got_posts = {request_id for _, method, request_id in received if method == "POST"}
        assert got_gets and got_posts, received
        # Every GET it failed went on to the working replica, which answered it.
        assert {gets[request_id].status for request_id in got_gets} == {200}
        assert all(served_by_the_app(request_id) for request_id in got_gets)
        # Every POST it was sent ended there, a 502: it may have done its work, so nginx does not repeat it.
        assert {posts[request_id].status for request_id in got_posts} == {502}
        assert not any(served_by_the_app(request_id) for request_id in got_posts)
        assert {request_id for request_id, reply in posts.items() if reply.status == 502} == got_posts
        failed = sorted(got_posts)[0]
        shown = render_waterfall(failed, hoplog.events_of(hoplog.scan(lines, failed).records))
        assert "upstream prematurely closed connection" in shown, shown
    finally:
        subprocess.run(["docker", "rm", "-f", odd], capture_output=True)


# nginx's retry over HTTP (gunicorn) shows on the swarm tier, which runs this lab after the compose tier.
@pytest.mark.one_server_on("compose", "uwsgi")
def test_replica_down_lab_keeps_gets_going_and_never_repeats_a_post_the_dead_replica_held(stack):
    target = labs.Target(port=stack.port, log_lines=lambda: hop_log_lines(stack.stack),
                         container_ids=stack.stack.container_ids, control=stack.stack)
    report = labs.run("replica-down", target)
    assert report.ok, [f"{c.what}: expected {c.expected}; saw {c.seen}" for c in report.checks if not c.ok]
    assert len(report.checks) == 3  # every replica answers first, then the GETs and the POSTs
    assert len(stack.stack.replicas("flask")) == 1  # scaled back


def test_a_database_restart_under_writes_is_one_gap_of_503s_per_client_and_loses_no_answered_write(tier_stack):
    tier_stack.use(BOTH_SERVERS)
    target = lab_target(tier_stack)
    report = labs.run("database-restart", target)
    assert report.ok, [f"{c.what}: {c.seen}" for c in report.checks if not c.ok]
    stored = [c for c in report.checks if c.what.endswith("the writes the load sent")]
    assert len(stored) == 3 and all(", 0 lost;" in c.seen for c in stored)
