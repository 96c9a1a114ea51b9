"""One settings table (wsgilab.settings), and every copy of a default held to it.

A setting's default is written once, in wsgilab/settings.py. The places that
must spell it again (``.env``, ``docker-compose.yml``'s ``${NAME:-default}``,
nginx/render-config, which is shell) are read here and compared; the
launcher, the labs' control and docs/settings.md take it from the table. No
stack is needed; render-config runs for real.
"""

import os
import re
import subprocess

import pytest
from lab_stacks import REPO

from wsgilab import settings
from wsgilab.container.launch import LaunchError, server_environment
from wsgilab.labs import control

ENV_FILE = REPO / ".env"
COMPOSE_FILE = REPO / "docker-compose.yml"
SWARM_FILE = REPO / "scripts" / "swarm.yml"
RENDER_CONFIG = REPO / "nginx" / "render-config"


def _env_file() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in ENV_FILE.read_text().splitlines() if line and not line.startswith("#")]
    return {name: value for name, value in pairs}


def test_env_file_names_every_setting_and_no_other():
    assert set(_env_file()) == set(settings.SETTINGS)


def test_env_file_values_are_the_defaults_or_empty():
    differ = {name: value for name, value in _env_file().items()
              if value not in ("", settings.SETTINGS[name].default)}
    assert differ == {}


def test_compose_file_defaults_are_the_tables():
    found = re.findall(r"\$\{([A-Z_]+):-([^}]*)\}", COMPOSE_FILE.read_text())
    assert found, "no ${NAME:-default} in docker-compose.yml"
    unknown = sorted({name for name, _ in found} - set(settings.SETTINGS))
    assert unknown == []
    differ = [(name, default) for name, default in found if default not in ("", settings.SETTINGS[name].default)]
    assert differ == []


def test_compose_file_passes_every_setting_the_containers_read():
    text = COMPOSE_FILE.read_text()
    read_by_containers = [s.name for s in settings.SETTINGS.values() if s.read_by not in ("compose", "swarm")]
    assert [name for name in read_by_containers if f"${{{name}:-" not in text] == []


def test_swarm_override_spells_every_swarm_setting_with_the_tables_default():
    text = SWARM_FILE.read_text()
    found = dict(re.findall(r"\$\{([A-Z_]+):-([^}]*)\}", text))
    swarm = {s.name: s.default for s in settings.SETTINGS.values() if s.read_by == "swarm"}
    assert found == swarm


def test_render_config_defaults_are_the_tables():
    script = RENDER_CONFIG.read_text()
    for name in ("NGINX_CONNECT_TIMEOUT", "NGINX_READ_TIMEOUT", "WSGILAB_TRACE_SAMPLE"):
        assert f"${{{name}:-{settings.SETTINGS[name].default}}}" in script, name
    assert f"${{NGINX_SERVER_NAMES:-{settings.SETTINGS['WSGILAB_SERVER_NAMES'].default}}}" in script
    assert "_SERVER:-gunicorn}" in script and all(
        settings.SETTINGS[f"{app.upper()}_SERVER"].default == "gunicorn" for app in settings.APPS)


def _render(tmp_path, **env):
    return subprocess.run([str(RENDER_CONFIG), str(tmp_path / "out")], capture_output=True, text=True,
                          env={**os.environ, "NGINX_RESOLVER": "127.0.0.1", **env})


@pytest.mark.parametrize("name, value", [
    ("NGINX_CONNECT_TIMEOUT", "0"), ("NGINX_CONNECT_TIMEOUT", "5s"), ("NGINX_READ_TIMEOUT", "-1"),
    ("NGINX_READ_TIMEOUT", "90"), ("NGINX_CONNECT_TIMEOUT", "2"), ("RAW_SERVER", "waitress"), ("RAW_SERVER", "tornado"),
    ("DJANGO_SERVER", "uwsgi"), ("FLASK_SERVER", "Gunicorn"), ("WSGILAB_TRACE_SAMPLE", "12.5"),
    ("WSGILAB_TRACE_SAMPLE", "0"), ("WSGILAB_TRACE_SAMPLE", "101"), ("WSGILAB_TRACE_SAMPLE", "1.234"),
    ("WSGILAB_TRACE_SAMPLE", "ten"), ("WSGILAB_TRACE_SAMPLE", "-5"), ("WSGILAB_TRACE_SAMPLE", "010"),
    ("WSGILAB_TRACE_SAMPLE", "05.5"), ("WSGILAB_TRACE_SAMPLE", "100.0"), ("WSGILAB_TRACE_SAMPLE", "1e2"),
    ("WSGILAB_TRACE_SAMPLE", "005"), ("WSGILAB_TRACE_SAMPLE", "099.99"), ("WSGILAB_TRACE_SAMPLE", "100.5"),
])
def test_render_config_takes_and_refuses_what_the_table_does(tmp_path, name, value):
    done = _render(tmp_path, **{name: value})
    try:
        settings.SETTINGS[name].value(value)
    except settings.SettingError as error:
        assert done.returncode == 64
        assert str(error) in done.stderr
    else:
        assert done.returncode == 0, done.stderr


def test_render_config_refuses_server_names_the_table_refuses(tmp_path):
    bad = "localhost; return 200"
    with pytest.raises(settings.SettingError) as refused:
        settings.SETTINGS["WSGILAB_SERVER_NAMES"].value(bad)
    done = _render(tmp_path, NGINX_SERVER_NAMES=bad)
    assert done.returncode == 64
    assert str(refused.value).replace("WSGILAB_SERVER_NAMES", "NGINX_SERVER_NAMES") in done.stderr


def test_launcher_fills_in_the_tables_defaults():
    env = server_environment({"WSGI_APP": "raw_app:application", "SCRIPT_NAME": "/raw"})
    for name in ("WSGI_THREADS", "WSGI_TIMEOUT", "WSGI_BACKLOG"):
        assert env[name] == settings.SETTINGS[name].default
    assert int(env["WSGI_WORKERS"]) >= 3  # 2 x CPUs + 1, worked out at start


def test_launcher_and_lab_control_refuse_with_the_tables_words():
    with pytest.raises(settings.SettingError) as refused:
        settings.SETTINGS["WSGI_TIMEOUT"].value("0")
    with pytest.raises(LaunchError, match=str(refused.value)):
        server_environment({"WSGI_APP": "raw_app:application", "SCRIPT_NAME": "/raw", "WSGI_TIMEOUT": "0"})
    with pytest.raises(control.ControlError, match=str(refused.value)):
        control.check_settings({"WSGI_TIMEOUT": "0"})


def test_labs_may_change_exactly_the_settings_the_table_marks():
    assert set(control.SETTINGS) == {s.name for s in settings.SETTINGS.values() if s.lab_may_change}


def test_settings_page_is_generated_from_the_table():
    page = (REPO / "docs" / "settings.md").read_text()
    assert page == settings.markdown(), "run: python -m wsgilab.settings > docs/settings.md"
