"""Settings that are wrong fail loudly, and the safe defaults hold.

These start the real launcher, render script and Django project as
processes; no stack is needed.
"""

import os
import re
import subprocess
import sys
import time

import pytest
from lab_stacks import REPO, free_port, nginx_version_of
from loopback_servers import stop

from wsgilab.container import uwsgi_protocol
from wsgilab.labs import control
from wsgilab.container.launch import LaunchError, server_environment, usable_cpus

APP_ENV = {"WSGI_APP": "raw_app:application", "SCRIPT_NAME": "/raw"}


def _launch(**env):
    return subprocess.run([sys.executable, "-m", "wsgilab.container.launch"], env={**os.environ, **env},
                          cwd=REPO / "raw_wsgi_app", capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("setting, value, message", [
    ("WSGI_SERVER", "nginx", "WSGI_SERVER must be gunicorn, uwsgi, granian, waitress or uvicorn, not 'nginx'"),
    ("WSGI_PROTOCOL", "spdy", "WSGI_PROTOCOL must be http or uwsgi, not 'spdy'"),
    ("SCRIPT_NAME", "raw", "SCRIPT_NAME must be the URL prefix"),
    ("WSGI_APP", "raw_app", "WSGI_APP must name a callable as module:name"),
    ("WSGI_WORKERS", "0", "WSGI_WORKERS must be a whole number, at least 1"),
    ("WSGI_BACKLOG", "many", "WSGI_BACKLOG must be a whole number, at least 1"),
])
def test_launcher_refuses_a_bad_setting_and_says_which(setting, value, message):
    done = _launch(**{**APP_ENV, "WSGI_CONFIG_DIR": str(REPO), setting: value})
    assert done.returncode == 2
    assert message in done.stderr


def _listen_backlog(port):
    """The backlog the kernel holds for the socket listening on ``port`` (ss's Send-Q), or None."""
    shown = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return int(shown.split()[2]) if shown.strip() else None


@pytest.mark.parametrize("server", ["gunicorn", "uwsgi"])
def test_the_listen_backlog_setting_reaches_the_kernel_on_both_servers(server):
    port = free_port()
    env = {**os.environ, **APP_ENV, "WSGI_SERVER": server, "WSGI_BIND": f"127.0.0.1:{port}", "WSGI_WORKERS": "1",
           "WSGI_BACKLOG": "7", "WSGI_CONFIG_DIR": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "wsgilab.container.launch"], env=env, cwd=REPO / "raw_wsgi_app",
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while (backlog := _listen_backlog(port)) is None and time.monotonic() < deadline:
            assert process.poll() is None, f"{server} exited with {process.returncode}"
            time.sleep(0.1)
        assert backlog == 7
    finally:
        stop(process)


def test_launcher_defaults_are_the_same_for_both_servers_but_the_port():
    gunicorn = server_environment({**APP_ENV, "WSGI_SERVER": "gunicorn"})
    uwsgi = server_environment({**APP_ENV, "WSGI_SERVER": "uwsgi"})
    assert gunicorn["WSGI_WORKERS"] == uwsgi["WSGI_WORKERS"] == str(2 * usable_cpus() + 1)
    assert gunicorn["WSGI_THREADS"] == uwsgi["WSGI_THREADS"] == "1"
    assert gunicorn["WSGI_TIMEOUT"] == uwsgi["WSGI_TIMEOUT"] == "30"
    assert gunicorn["WSGI_BACKLOG"] == uwsgi["WSGI_BACKLOG"] == "128"
    assert (gunicorn["WSGI_BIND"], uwsgi["WSGI_BIND"]) == ("0.0.0.0:8000", "0.0.0.0:3031")


def test_each_server_keeps_its_own_default_for_where_it_imports_the_app_until_told():
    """gunicorn imports the app in each worker, uWSGI in its master (no lazy-apps); WSGI_PRELOAD_APP sets both."""
    defaults = {server: server_environment({**APP_ENV, "WSGI_SERVER": server}) for server in ("gunicorn", "uwsgi")}
    assert [(env["WSGI_PRELOAD_APP"], env["WSGI_LAZY_APPS"]) for env in defaults.values()] == [
        ("off", "true"), ("on", "false")]
    for value, lazy in (("on", "false"), ("off", "true")):
        for server in ("gunicorn", "uwsgi"):
            env = server_environment({**APP_ENV, "WSGI_SERVER": server, "WSGI_PRELOAD_APP": value})
            assert (env["WSGI_PRELOAD_APP"], env["WSGI_LAZY_APPS"]) == (value, lazy)
    with pytest.raises(LaunchError, match="WSGI_PRELOAD_APP must be on or off"):
        server_environment({**APP_ENV, "WSGI_PRELOAD_APP": "yes"})


def test_render_config_refuses_an_unknown_server(tmp_path):
    done = subprocess.run([str(REPO / "nginx" / "render-config"), str(tmp_path)],
                          env={**os.environ, "FLASK_SERVER": "tornado"}, capture_output=True, text=True)
    assert done.returncode == 64
    assert "FLASK_SERVER must be gunicorn, uwsgi, granian, waitress or uvicorn, not 'tornado'" in done.stderr


@pytest.mark.parametrize("setting", ["NGINX_CONNECT_TIMEOUT", "NGINX_READ_TIMEOUT"])
@pytest.mark.parametrize("value", ["0", "1m", "-5", "60s"])
def test_render_config_refuses_a_timeout_that_is_not_whole_seconds(tmp_path, setting, value):
    done = subprocess.run([str(REPO / "nginx" / "render-config"), str(tmp_path)],
                          env={**os.environ, setting: value}, capture_output=True, text=True)
    assert done.returncode == 64
    assert f"{setting} must be a whole number of seconds, at least 1, not '{value}'" in done.stderr


def test_render_config_sets_each_timeout_for_both_protocols_from_one_setting(tmp_path):
    subprocess.run([str(REPO / "nginx" / "render-config"), str(tmp_path)],
                   env={**os.environ, "NGINX_CONNECT_TIMEOUT": "2", "NGINX_READ_TIMEOUT": "7"},
                   capture_output=True, check=True)
    assert (tmp_path / "timeouts.conf").read_text() == (
        "proxy_connect_timeout 2s;\nuwsgi_connect_timeout 2s;\nproxy_read_timeout 7s;\nuwsgi_read_timeout 7s;\n")


def test_render_config_defaults_to_a_5_s_connect_and_a_60_s_read_timeout(tmp_path):
    env = {name: value for name, value in os.environ.items() if not name.startswith("NGINX_")}
    subprocess.run([str(REPO / "nginx" / "render-config"), str(tmp_path)], env=env, capture_output=True, check=True)
    assert (tmp_path / "timeouts.conf").read_text() == (
        "proxy_connect_timeout 5s;\nuwsgi_connect_timeout 5s;\nproxy_read_timeout 60s;\nuwsgi_read_timeout 60s;\n")


def _render(tmp_path, **env):
    return subprocess.run([str(REPO / "nginx" / "render-config"), str(tmp_path)], env={**os.environ, **env},
                          capture_output=True, text=True)


@pytest.mark.parametrize(("value", "line"), [
    ("127.0.0.11", "resolver 127.0.0.11 valid=1s ipv6=off;"),
    ("fd00::53", "resolver [fd00::53] valid=1s ipv6=off;"),
    ("[fd00::53]", "resolver [fd00::53] valid=1s ipv6=off;"),
])
def test_render_config_looks_the_apps_up_at_the_resolver_it_is_given(tmp_path, value, line):
    assert _render(tmp_path, NGINX_RESOLVER=value).returncode == 0
    assert (tmp_path / "resolver.conf").read_text().splitlines()[0] == line
    # the address sits in a variable, which is what makes nginx ask per request
    locations = (tmp_path / "apps.locations.conf").read_text()
    assert 'set $lab_app_server "django:8000";' in locations
    assert "proxy_pass http://$lab_app_server;" in locations


def test_render_config_keeps_a_pool_only_for_gunicorn_apps_and_only_when_asked(tmp_path):
    # Asked: an upstream block per gunicorn app, its name fixed in proxy_pass; uWSGI's app as before.
    assert _render(tmp_path, NGINX_UPSTREAM_KEEPALIVE="8", RAW_SERVER="uwsgi").returncode == 0
    upstreams = (tmp_path / "apps.upstreams.conf").read_text()
    locations = (tmp_path / "apps.locations.conf").read_text()
    # The name looked up again and again where this nginx can (1.27.3 and later), else once at start.
    resolve = " resolve" if nginx_version_of("nginx") >= (1, 27, 3) else ""
    for app in ("django", "flask"):
        assert (f"upstream lab_{app}_pool {{\n    zone lab_{app}_pool 64k;\n    server {app}:8000{resolve};\n"
                f"    keepalive 8;\n}}") in upstreams
        assert f"proxy_pass http://lab_{app}_pool;" in locations
    assert "lab_raw_pool" not in upstreams + locations and "uwsgi_pass $lab_app_server;" in locations
    # Not asked (the default): no upstream block, every app looked up per request.
    env = {name: value for name, value in os.environ.items() if not name.startswith("NGINX_")}
    subprocess.run([str(REPO / "nginx" / "render-config"), str(tmp_path)], env=env, capture_output=True, check=True)
    assert (tmp_path / "apps.upstreams.conf").read_text() == ""
    assert (tmp_path / "apps.locations.conf").read_text().count("proxy_pass http://$lab_app_server;") == 3


@pytest.mark.parametrize("value", ["-1", "4x", "1025"])
def test_render_config_refuses_a_pool_size_that_is_not_0_to_1024(tmp_path, value):
    done = _render(tmp_path, NGINX_UPSTREAM_KEEPALIVE=value)
    assert done.returncode == 64
    assert "NGINX_UPSTREAM_KEEPALIVE must be" in done.stderr and f"'{value}'" in done.stderr


@pytest.mark.parametrize(("env", "message"), [
    ({"NGINX_RESOLVER": "dns.example"}, "NGINX_RESOLVER must be an IP address, not 'dns.example'"),
    ({"RAW_UPSTREAM": "raw:8000; return 200"}, "RAW_UPSTREAM must be host:port, not 'raw:8000; return 200'"),
])
def test_render_config_refuses_addresses_that_would_inject_config(tmp_path, env, message):
    done = _render(tmp_path, **env)
    assert done.returncode == 64
    assert message in done.stderr


@pytest.mark.parametrize(("settings", "message"), [
    ({"WSGI_TIMEOUT": "0"}, "WSGI_TIMEOUT must be a whole number of seconds, at least 1"),
    ({"DEBUG": "1"}, "DEBUG is not a setting labs may change"),
])
def test_a_lab_may_change_only_known_settings_to_whole_numbers(settings, message):
    with pytest.raises(control.ControlError, match=message):
        control.check_settings(settings)


def _manage(*args, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run([sys.executable, "manage.py", *args], env={**clean, **env},
                          cwd=REPO / "django_app", capture_output=True, text=True, timeout=60)


def test_django_check_deploy_flags_only_what_plain_http_cannot_meet():
    done = _manage("check", "--deploy", DJANGO_SECRET_KEY="x" * 20 + os.urandom(24).hex())
    assert done.returncode == 0, done.stderr
    warnings = set(re.findall(r"\(([a-z_.]+\.[EW]\d+)\)", done.stderr + done.stdout))
    # HSTS, SSL redirect and a Secure CSRF cookie: all need HTTPS. (No
    # session cookie warning: the project has no sessions.)
    assert warnings == {"security.W004", "security.W008", "security.W016"}


def test_django_says_loudly_when_it_runs_on_the_development_secret_key():
    done = _manage("check")
    assert "DJANGO_SECRET_KEY is not set" in done.stderr


def test_django_debug_is_off_unless_asked_for():
    done = _manage("shell", "-c", "from django.conf import settings; print(settings.DEBUG)",
                   DJANGO_SECRET_KEY="k" * 50)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr


def test_uwsgi_packet_larger_than_the_protocol_allows_is_refused():
    with pytest.raises(ValueError, match="the protocol allows 65535"):
        uwsgi_protocol.encode_request({"HTTP_X_BIG": "x" * 70000})


@pytest.mark.parametrize("server, protocol", [("waitress", "uwsgi"), ("granian", "uwsgi"), ("uwsgi", "http")])
def test_a_server_refuses_a_protocol_it_does_not_speak_in_the_launcher_and_in_nginx_alike(tmp_path, server,
                                                                                       protocol):
    done = _launch(**{**APP_ENV, "WSGI_CONFIG_DIR": str(REPO), "WSGI_SERVER": server, "WSGI_PROTOCOL": protocol})
    assert done.returncode == 2
    assert f"WSGI_PROTOCOL={protocol}, but {server} speaks" in done.stderr
    rendered = subprocess.run([str(REPO / "nginx" / "render-config"), str(tmp_path)],
                              env={**os.environ, "RAW_SERVER": server, "RAW_PROTOCOL": protocol,
                                   "NGINX_RESOLVER": "127.0.0.1"}, capture_output=True, text=True)
    assert rendered.returncode == 64
    assert f"RAW_PROTOCOL={protocol}, but {server} speaks" in rendered.stderr



def test_launcher_refuses_an_interface_the_server_does_not_serve_and_says_which():
    done = _launch(**{**APP_ENV, "WSGI_CONFIG_DIR": str(REPO), "WSGI_SERVER": "uwsgi", "WSGI_INTERFACE": "asgi"})
    assert done.returncode == 2
    assert "WSGI_INTERFACE=asgi, but uwsgi serves wsgi only" in done.stderr


def test_launcher_refuses_djangos_persistent_connections_on_the_asgi_side_as_djangos_docs_ask():
    # Django's service as compose runs it (only it is given DJANGO_DB_CONNECTIONS); refused before any import
    asgi = {"WSGI_APP": "labsite.wsgi:application", "SCRIPT_NAME": "/django", "WSGI_CONFIG_DIR": str(REPO),
            "WSGI_SERVER": "uvicorn", "WSGI_INTERFACE": "asgi", "ASGI_APP": "labsite.asgi:application",
            "DJANGO_DB_CONNECTIONS": "persistent"}
    done = _launch(**asgi)
    assert done.returncode == 2 and "persistent connections should be disabled under ASGI" in done.stderr
    # the pool, and a connection per request, are what Django's docs offer instead; the WSGI side keeps all three
    from wsgilab.container.launch import server_environment

    for fine in ("pool", "per-request"):
        assert server_environment({**asgi, "DJANGO_DB_CONNECTIONS": fine})["DJANGO_DB_CONNECTIONS"] == fine
    wsgi = {**asgi, "WSGI_SERVER": "gunicorn", "WSGI_INTERFACE": "wsgi"}
    assert server_environment(wsgi)["DJANGO_DB_CONNECTIONS"] == "persistent"
