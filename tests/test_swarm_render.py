"""scripts/swarm's stack file: docker-compose.yml as ``docker stack deploy`` takes it. No stack, no swarm needed.

The compose configuration is the one ``docker compose config`` prints for
docker-compose.yml and scripts/swarm.yml, where v2 runs here; else a small
stand-in of the same shape.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from lab_stacks import REPO

from wsgilab.hoptrace.compose_tool import V2, version
from wsgilab.settings import SETTINGS
from wsgilab.swarm.render import RenderError, stack_file

FILES = ["--file", str(REPO / "docker-compose.yml"), "--file", str(REPO / "scripts" / "swarm.yml")]


@pytest.fixture(scope="module")
def config():
    if version(V2) is None:
        pytest.skip("needs `docker compose` (v2): scripts/compose-v2")
    done = subprocess.run([*V2, *FILES, "config", "--format", "json"], cwd=REPO, capture_output=True, text=True,
                          env={**{name: value for name, value in os.environ.items() if name not in SETTINGS},
                               "FLASK_REPLICAS": "3"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_stack_file_keeps_no_key_stack_deploy_refuses(config):
    rendered = stack_file(config)
    assert set(rendered) == {"version", "services", "networks"}
    for name, service in rendered["services"].items():
        assert not {"build", "depends_on", "restart", "expose"} & set(service), name
        assert None not in service.values(), name
        assert isinstance(service["deploy"]["resources"]["limits"]["cpus"], str), name


def test_apps_get_replicas_dns_round_robin_and_start_first_updates_from_the_override(config):
    services = stack_file(config)["services"]
    assert [services[app]["deploy"]["replicas"] for app in ("django", "flask", "raw")] == [2, 3, 2]
    for app in ("django", "flask", "raw"):
        assert services[app]["deploy"]["endpoint_mode"] == "dnsrr"
        assert services[app]["deploy"]["update_config"]["order"] == "start-first"
        assert services[app]["hostname"].startswith("{{.Task.Slot}}")
        assert "ports" not in services[app]


def test_nginx_alone_is_published_in_host_mode_on_the_compose_files_port(config):
    assert stack_file(config)["services"]["nginx"]["ports"] == [
        {"target": 8080, "published": 8080, "protocol": "tcp", "mode": "host"}]


def test_networks_become_overlay_and_the_app_networks_stay_internal(config):
    networks = stack_file(config)["networks"]
    assert networks["edge"] == {"driver": "overlay"}
    assert all(networks[f"to-{app}"] == {"driver": "overlay", "internal": True} for app in ("django", "flask", "raw"))


def test_an_app_that_publishes_a_port_is_refused():
    config = {"services": {"nginx": {"ports": [{"target": 8080, "published": "8080"}], "deploy": {}},
                           "flask": {"ports": [{"target": 8000, "published": "8000"}], "deploy": {}}}}
    with pytest.raises(RenderError, match="flask service publishes a port"):
        stack_file(config)


def test_the_database_stays_out_of_the_stack_and_the_apps_know_of_none(config):
    stack = stack_file(config)
    assert not {"db", "db-secrets"} & set(stack["services"])
    assert not [name for name in stack["networks"] if name.startswith("db-")]
    for app in ("django", "flask", "raw"):
        service = stack["services"][app]
        assert not [key for key in service["environment"] if key.startswith("WSGILAB_DB_")], app
        assert "volumes" not in service, app
        assert not [name for name in service.get("networks") or {} if name.startswith("db-")], app

