"""The compose profiles: `otel` (hoptrace in the stack pushes every trace to Jaeger) and `viewer` (`hoptrace web`).

Compose tier only. The profiles stay out of the default `up`, and only their
hoptrace services get Docker's socket. The exporter is the profile's own service, as
docker-compose.yml defines it (its command, the socket, DOCKER_GID, the otel
network). No registry can be reached where CI runs, so Jaeger's image is
usually missing: then a small OTLP/HTTP receiver of our own takes Jaeger's
name on the otel network, and what it receives is decoded with
OpenTelemetry's protocol definitions. The Jaeger part runs where its image is.
"""

import copy
import json
import os
import subprocess
import time
import urllib.request

import pytest
from lab_http import get
from lab_stacks import APPS, REPO, free_port, wait_until_served
from test_trace_context import _decoded, _spans, _tree_problems

from wsgilab.hoptrace.compose_tool import compose_command
from wsgilab.labs.rawhttp import exchange, request_bytes

ONLY_TIERS = ("compose",)

JAEGER_IMAGE = "jaegertracing/jaeger:2.13.0"
SOCKET = "/var/run/docker.sock"

#: An OTLP/HTTP receiver in a few lines: prints each POST's body as one line, answers 200.
RECEIVER = """
import http.server, sys
class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        print(self.path, self.headers["Content-Type"], body.decode(), flush=True)
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 4318), Receiver).serve_forever()
"""


def _config(*profile):
    done = subprocess.run([*compose_command(), *profile, "config", "--format", "json"], cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0 and "format" in done.stderr:
        pytest.skip("this compose tool has no `config --format json` (docker-compose v1)")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["services"]


def test_the_profiles_stay_out_of_the_default_up_and_only_their_hoptrace_services_get_the_docker_socket():
    assert sorted(_config()) == ["db", "db-secrets", "django", "flask", "nginx", "raw"]
    services = _config("--profile", "otel", "--profile", "viewer")
    assert sorted(services) == ["db", "db-secrets", "django", "flask", "jaeger", "nginx", "otel-export", "raw",
                                "viewer"]
    with_socket = sorted(name for name, service in services.items()
                         if any(volume.get("source") == SOCKET for volume in service.get("volumes", [])))
    assert with_socket == ["otel-export", "viewer"]
    for name in with_socket:  # the image's own non-root user, plus the socket's group only
        assert "user" not in services[name] and services[name]["group_add"] == ["0"], name
        assert "--docker-api" in services[name]["command"], name
    exporter = services["otel-export"]
    assert exporter["networks"] == {"otel": None} and "ports" not in exporter
    assert exporter["command"][-2:] == ["--otlp-endpoint", "http://jaeger:4318/v1/traces"]
    published = {name: [(port["host_ip"], port["target"]) for port in service.get("ports", [])]
                 for name, service in services.items()}
    assert published["jaeger"] == [("127.0.0.1", 16686)] and published["viewer"] == [("127.0.0.1", 8081)]


class _Profile:
    """The profiles' services in the test project, with the socket's real group; removed by ``close``."""

    def __init__(self, stack, docker_gid):
        self.stack = stack
        self.env = {**stack.environment(stack.servers), "DOCKER_GID": str(docker_gid)}
        self.network = f"{stack.project}_otel"
        self.receiver = f"{stack.project}-otlp-receiver"

    def compose(self, *args, check=True):
        done = subprocess.run([*self.stack.compose, "--project-name", self.stack.project, "--profile", "otel",
                               "--profile", "viewer", *args],
                              cwd=REPO, env=self.env, capture_output=True, text=True, timeout=300)
        assert not check or done.returncode == 0, done.stderr
        return done

    def close(self):
        subprocess.run(["docker", "rm", "-f", self.receiver], capture_output=True)
        self.compose("rm", "--stop", "--force", "otel-export", "jaeger", "viewer", check=False)
        for network in (self.network, f"{self.stack.project}_viewer"):
            subprocess.run(["docker", "network", "rm", network], capture_output=True)


@pytest.fixture
def profile(tier_stack):
    tier_stack.use(tier_stack.servers or {app: "gunicorn" for app in APPS})
    started = _Profile(tier_stack, os.stat(SOCKET).st_gid)
    try:
        yield started
    finally:
        started.close()


def _only_trace(document, trace_id):
    """The part of an OTLP/JSON document that is one trace's spans (a batch may hold several)."""
    kept = copy.deepcopy(document)
    for resource in kept["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            scope["spans"] = [span for span in scope["spans"] if span["traceId"] == trace_id]
        resource["scopeSpans"] = [scope for scope in resource["scopeSpans"] if scope["spans"]]
    kept["resourceSpans"] = [resource for resource in kept["resourceSpans"] if resource["scopeSpans"]]
    return kept


def _received(receiver):
    """(path, content type, OTLP/JSON document) of each POST the receiver has printed whole.

    A body over 16 KiB reaches Docker's log in pieces, and a read between two of them sees a line cut short:
    only lines whose newline has come are read, the rest on the next call.
    """
    out = subprocess.run(["docker", "logs", receiver], capture_output=True, text=True).stdout
    whole = out.split("\n")[:-1]  # what follows the last newline is not a whole line yet
    return [(path, kind, json.loads(body)) for path, kind, body in
            (line.split(" ", 2) for line in whole if line.startswith("/"))]


def _wait_for_traces(profile, trace_ids, seconds=20.0):
    """The POSTs received once every one of ``trace_ids`` has come (or ``seconds`` passed)."""
    deadline = time.monotonic() + seconds
    while True:
        posts = _received(profile.receiver)
        pushed = {span["traceId"] for _, _, document in posts for resource in document["resourceSpans"]
                  for scope in resource["scopeSpans"] for span in scope["spans"]}
        if set(trace_ids) <= pushed or time.monotonic() > deadline:
            return posts
        time.sleep(0.5)


def _wait_for_whole_trace(profile, app, trace_id, seconds=20.0):
    """Wait until the receiver holds ``trace_id`` whole (``_check_pushed``), in one push or several.

    The exporter pushes what it has a second after a request's first line;
    a line that comes later (a restarted container is followed again at the
    exporter's next look for containers) goes in a later push, and an OTLP
    receiver joins the spans by their trace id.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            return _check_pushed(_wait_for_traces(profile, [trace_id], seconds), app, trace_id)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _check_pushed(posts, app, trace_id):
    parts = [_only_trace(document, trace_id) for _, _, document in posts]
    whole = {"resourceSpans": [resource for part in parts for resource in part["resourceSpans"]]}
    assert whole["resourceSpans"], f"/{app}/'s trace {trace_id} never reached the receiver"
    request = _decoded(whole)
    assert {f"GET /{app}/", "WSGI app(environ, start_response)"} <= set(_spans(request)), app
    assert _tree_problems(request, b"") == [], app


def test_the_exporter_in_the_stack_pushes_every_request_to_the_otlp_endpoint_within_seconds(profile):
    # Starting otel-export alone (no Jaeger) makes the otel network; the receiver then takes Jaeger's name on it.
    profile.compose("up", "-d", "--no-deps", "otel-export")
    subprocess.run(["docker", "run", "-d", "--name", profile.receiver, "--network", profile.network,
                    "--network-alias", "jaeger", "wsgi-lab/raw:local", "python", "-c", RECEIVER],
                   check=True, capture_output=True)
    time.sleep(1.0)  # the exporter follows the logs from the moment it started, the receiver listens
    traces = {app: get(profile.stack.port, f"/{app}/").header("X-Request-ID") for app in APPS}
    posts = _wait_for_traces(profile, traces.values())
    assert posts, profile.compose("logs", "otel-export").stdout[-2000:]
    assert {(path, kind) for path, kind, _ in posts} == {("/v1/traces", "application/json")}
    for app, trace_id in traces.items():
        _wait_for_whole_trace(profile, app, trace_id)
    # A restarted app is followed again, from its first new line.
    profile.stack.run("restart", "raw")
    profile.stack.use(profile.stack.servers)
    wait_until_served(profile.stack.port, {"raw": profile.stack.servers["raw"]})
    after = get(profile.stack.port, "/raw/").header("X-Request-ID")
    _wait_for_whole_trace(profile, "raw", after)


def test_hoptrace_runs_in_the_exporters_image_without_python_on_the_host(profile):
    request_id = get(profile.stack.port, "/flask/").header("X-Request-ID")
    time.sleep(1.0)  # every hop has written its line
    done = profile.compose("run", "--rm", "--no-deps", "-T", "otel-export",
                           "python", "-m", "wsgilab.hoptrace", "show", request_id, "--docker-api")
    assert done.stdout.startswith(f"{request_id}  GET /flask/  200"), done.stdout + done.stderr
    assert "view" in done.stdout and "nginx" in done.stdout


def test_the_exporter_says_how_to_fix_a_docker_socket_it_may_not_open(profile):
    profile.env["DOCKER_GID"] = str(os.stat(SOCKET).st_gid + 1)  # a group, not the socket's
    done = profile.compose("run", "--rm", "--no-deps", "-T", "otel-export", check=False)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "permission denied" in done.stderr and "set DOCKER_GID" in done.stderr, done.stderr


def test_jaeger_shows_a_request_the_stack_served(profile):
    if subprocess.run(["docker", "image", "inspect", JAEGER_IMAGE], capture_output=True).returncode != 0:
        pytest.skip(f"no {JAEGER_IMAGE} image here, and no registry to pull it from: the exporter's push is "
                    "tested against an OTLP receiver of our own instead")
    port = int(profile.env.get("WSGILAB_JAEGER_PORT", "16686"))
    profile.compose("up", "-d", "jaeger", "otel-export")
    time.sleep(2.0)
    trace_id = get(profile.stack.port, "/django/").header("X-Request-ID")
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/traces/{trace_id}", timeout=5) as reply:
                spans = json.load(reply)["data"][0]["spans"]
                break
        except (OSError, KeyError, IndexError):
            assert time.monotonic() < deadline, f"Jaeger never showed trace {trace_id}"
            time.sleep(1.0)
    assert "GET /django/" in {span["operationName"] for span in spans}


def test_the_viewer_profile_serves_the_page_and_each_request_on_loopback(profile):
    port = free_port()
    profile.env["WSGILAB_VIEWER_PORT"] = str(port)
    profile.compose("up", "-d", "--no-deps", "viewer")
    page = _until_answers(f"http://127.0.0.1:{port}/")
    assert b'<script src="/viewer.js"' in page
    request_id = get(profile.stack.port, "/django/").header("X-Request-ID")
    deadline = time.monotonic() + 20
    while True:
        listed = json.loads(_until_answers(f"http://127.0.0.1:{port}/api/requests"))
        if request_id in [request["request_id"] for request in listed]:
            break
        assert time.monotonic() < deadline, f"{request_id} never showed in the viewer"
        time.sleep(0.5)
    detail = json.loads(_until_answers(f"http://127.0.0.1:{port}/api/requests/{request_id}"))
    assert detail["heading"].startswith(f"{request_id}  GET /django/  200")
    # bound to its container's 0.0.0.0, it still answers loopback names only: no page can rebind its name to it
    for path in ("/", "/api/requests", f"/api/requests/{request_id}", "/api/stats?id=" + request_id):
        refused = exchange(port, request_bytes("GET", path, host=f"evil.example:{port}"), timeout=5)
        assert refused.status == 421 and request_id.encode() not in refused.raw, path
        assert exchange(port, request_bytes("GET", path, host=f"localhost:{port}"), timeout=5).status == 200, path


def _until_answers(url, seconds=20.0):
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return reply.read()
        except OSError:
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.3)
