"""scripts/swarm's stack file: docker-compose.yml as ``docker stack deploy`` takes it. No stack, no swarm needed.

The compose configuration is the one ``docker compose config`` prints for
docker-compose.yml and scripts/swarm.yml, where v2 runs here; else a small
stand-in of the same shape.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest
from lab_stacks import REPO

from wsgilab.hoptrace.compose_tool import V2, version
from wsgilab.settings import SETTINGS
from wsgilab.swarm.database import DIGEST_LABEL, _digest, _same
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
    assert set(rendered) == {"version", "services", "networks", "volumes", "secrets", "configs"}
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


def test_each_service_keeps_its_own_networks_so_an_app_reaches_only_nginx_and_the_database(config):
    services = stack_file(config)["services"]
    assert set(services["nginx"]["networks"]) == {"edge", "to-django", "to-flask", "to-raw"}
    assert set(services["db"]["networks"]) == {"db-django", "db-flask", "db-raw"}
    for app in ("django", "flask", "raw"):
        assert set(services[app]["networks"]) == {f"to-{app}", f"db-{app}"}, app


def test_the_database_is_one_task_pinned_to_the_labelled_node_and_stopped_before_its_successor(config):
    stack = stack_file(config, "lab")
    assert "db-secrets" not in stack["services"]
    deploy = stack["services"]["db"]["deploy"]
    assert deploy["replicas"] == 1 and deploy["update_config"]["order"] == "stop-first"
    assert deploy["placement"]["constraints"] == ["node.labels.wsgilab.db == true"]
    assert stack["services"]["db"]["volumes"] == [
        {"type": "volume", "source": "db-data", "target": "/var/lib/postgresql/data", "volume": {}}]
    assert stack["volumes"] == {"db-data": {}}


def test_the_passwords_are_docker_secrets_scripts_swarm_made_and_only_the_db_reads_the_superusers(config):
    stack = stack_file(config, "lab")
    assert stack["secrets"] == {"db-admin-password": {"external": True, "name": "lab_db-admin-password"},
                                "db-password": {"external": True, "name": "lab_db-password"}}
    db = stack["services"]["db"]
    assert {s["source"]: s["mode"] for s in db["secrets"]} == {"db-admin-password": 0o400, "db-password": 0o444}
    assert db["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db-admin-password"
    for app in ("django", "flask", "raw"):
        service = stack["services"][app]
        assert [s["source"] for s in service["secrets"]] == ["db-password"], app
        assert service["environment"]["WSGILAB_DB_PASSWORD_FILE"] == "/run/secrets/db-password", app
        assert service["environment"]["WSGILAB_DB_HOST"] == "db" and "volumes" not in service, app


def test_the_first_start_scripts_are_configs_named_by_their_content(config):
    stack = stack_file(config, "lab")
    script = REPO / "db" / "initdb.d" / "10-app-role.sh"
    digest = hashlib.sha256(script.read_bytes()).hexdigest()[:12]
    assert stack["configs"] == {"db-10-app-role": {"file": str(script), "name": f"lab_db-10-app-role-{digest}"}}
    assert stack["services"]["db"]["configs"] == [
        {"source": "db-10-app-role", "target": "/docker-entrypoint-initdb.d/10-app-role.sh", "mode": 0o555}]


def test_a_bind_mount_of_what_is_no_folder_of_the_checkout_is_refused():
    config = {"services": {"nginx": {"ports": [{"target": 8080, "published": "8080"}], "deploy": {}},
                           "db": {"deploy": {}, "volumes": [{"type": "bind", "source": "/nonexistent/x",
                                                             "target": "/x"}]}}}
    with pytest.raises(RenderError, match="binds /nonexistent/x"):
        stack_file(config)


def test_the_apps_password_is_told_apart_from_another_by_its_secrets_label_alone():
    salt = bytes(range(16))
    label = json.dumps({DIGEST_LABEL: f"{salt.hex()}:{_digest('kept', salt)}"})
    assert _same("kept", label)
    assert not _same("another", label) and not _same("kept", "{}") and "kept" not in label
