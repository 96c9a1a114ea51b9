"""What the compose stack promises about its containers: non-root, healthy, only nginx published.

Compose tier only, in both phases (all apps on gunicorn, all on uWSGI), so the
uwsgi socket is checked as well as gunicorn's port.
"""

import json
import subprocess

ONLY_TIERS = ("compose",)


def _inspect(container_ids):
    out = subprocess.run(["docker", "inspect", *container_ids], capture_output=True, text=True, check=True)
    return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in json.loads(out.stdout)}


def test_every_service_reports_healthy(stack):
    containers = _inspect(stack.stack.container_ids())
    assert sorted(containers) == ["django", "flask", "nginx", "raw"]
    for service, container in containers.items():
        assert container["State"]["Health"]["Status"] == "healthy", service


def test_every_container_runs_as_a_non_root_user(stack):
    for service, container in _inspect(stack.stack.container_ids()).items():
        assert container["Config"]["User"] not in ("", "root", "0"), service
        uid = subprocess.run(["docker", "exec", container["Id"], "id", "-u"],
                             capture_output=True, text=True, check=True).stdout.strip()
        assert uid != "0", service


def test_only_nginx_is_published_and_only_on_loopback(stack):
    for service, container in _inspect(stack.stack.container_ids()).items():
        bindings = {port: hosts for port, hosts in (container["NetworkSettings"]["Ports"] or {}).items() if hosts}
        if service == "nginx":
            assert list(bindings) == ["8080/tcp"]
            assert [(h["HostIp"], h["HostPort"]) for h in bindings["8080/tcp"]] == [("127.0.0.1", str(stack.port))]
        else:
            # gunicorn's 8000 and uWSGI's 3031 are exposed to the compose network, never to the host.
            assert bindings == {}, service
