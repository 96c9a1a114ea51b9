"""What the compose stack promises about its containers: non-root, healthy, only nginx published;
and that hoptrace finds a request in the project's own `docker compose logs`.

Compose tier only, in both phases (all apps on gunicorn, all on uWSGI), so the
uwsgi socket is checked as well as gunicorn's port.
"""

import json
import os
import subprocess
import sys
import time
import uuid

from lab_http import get
from lab_stacks import REPO, hop_log_lines

from wsgilab import labs
from wsgilab.labs import control
from wsgilab.labs.around_nginx import services

ONLY_TIERS = ("compose",)


def test_every_service_reports_healthy(stack):
    containers = services(stack.stack.container_ids())
    assert sorted(containers) == ["django", "flask", "nginx", "raw"]
    for service, container in containers.items():
        assert container["State"]["Health"]["Status"] == "healthy", service


def test_every_container_runs_as_a_non_root_user(stack):
    for service, container in services(stack.stack.container_ids()).items():
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
    for _ in range(20):
        shown = subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "show", "--compose", "--json", request_id],
                               capture_output=True, text=True, cwd=REPO, env=env, stdin=subprocess.DEVNULL)
        events = json.loads(shown.stdout)["events"] if shown.returncode == 0 else []
        if {"response_sent", "close"} <= {e["event"] for e in events}:
            break
        time.sleep(0.25)
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
