"""Both compose tools users have: the compose tier runs with `docker compose` (v2), and v1 keeps a smoke run.

README.md tells users to type ``docker compose``, the v2 plugin; Debian
bookworm's packages still give ``docker-compose`` 1.29. The compose tier
drives its stack with whichever ``compose_command()`` picks (v2 first), and
the smoke run below drives a second project with v1 by hand: up with the
defaults, every endpoint of every app, one server swap, ``hoptrace show``
and ``follow`` reading v1's own ``logs``, down. The compose file itself must
be one both tools take.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading

import pytest
from lab_http import get
from lab_stacks import APPS, REPO, ComposeStack
from test_endpoints import LINK_STATUS, UPSTREAM_PROTOCOL

from wsgilab.hoptrace import compose_tool

ONLY_TIERS = ("compose",)

V1, V2 = list(compose_tool.V1), list(compose_tool.V2)


needs_v1 = pytest.mark.skipif(compose_tool.version(compose_tool.V1) is None,
                              reason="docker-compose (v1) is not installed here")
needs_v2 = pytest.mark.skipif(compose_tool.version(compose_tool.V2) is None,
                              reason="docker compose (v2) is not installed here (scripts/compose-v2)")


def _config_errors(tool: list[str], compose_file) -> str:
    """What ``TOOL config`` says is wrong with ``compose_file`` ("" if it takes it)."""
    done = subprocess.run([*tool, "--file", str(compose_file), "--project-directory", str(REPO), "config", "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    return "" if done.returncode == 0 else (done.stderr or done.stdout or f"exit {done.returncode}")


@needs_v1
@needs_v2
@pytest.mark.parametrize("tool", [V2, V1], ids=["v2", "v1"])
def test_both_compose_tools_take_the_compose_file(tool):
    assert _config_errors(tool, REPO / "docker-compose.yml") == ""


@needs_v1
def test_the_file_check_sees_a_key_v1_refuses(tmp_path):
    # The check above must be able to fail: healthcheck's start_interval is
    # the key docker-compose.yml leaves out because v1 refuses it.
    text = (REPO / "docker-compose.yml").read_text().replace("    start_period: 30s\n",
                                                             "    start_period: 30s\n    start_interval: 1s\n", 1)
    changed = tmp_path / "docker-compose.yml"
    changed.write_text(text)
    assert "start_interval" in _config_errors(V1, changed)


@needs_v1
@needs_v2
def test_the_tool_is_v2_first_and_wsgilab_compose_picks_one_by_hand(monkeypatch):
    monkeypatch.delenv(compose_tool.ENV, raising=False)
    assert compose_tool.compose_command() == V2
    monkeypatch.setenv(compose_tool.ENV, "docker-compose")
    assert compose_tool.compose_command() == V1
    monkeypatch.setenv(compose_tool.ENV, "docker  compose")
    assert compose_tool.compose_command() == V2
    monkeypatch.setenv(compose_tool.ENV, "podman-compose")
    with pytest.raises(compose_tool.ComposeToolError, match="'docker compose' or 'docker-compose'"):
        compose_tool.compose_command()


@needs_v2
def test_the_compose_tier_runs_with_the_command_the_readme_gives(tier, compose_stack):
    assert compose_stack.compose == V2
    assert "docker compose up" in (REPO / "README.md").read_text()


def _hoptrace(project: str, *args: str, **popen) -> subprocess.Popen:
    """``hoptrace ARGS --compose --verbose`` in the repository, on ``project``, with v1 picked by hand."""
    env = {**os.environ, "COMPOSE_PROJECT_NAME": project, compose_tool.ENV: "docker-compose"}
    return subprocess.Popen([sys.executable, "-m", "wsgilab.hoptrace", *args, "--compose", "--verbose"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@needs_v1
def test_docker_compose_v1_runs_the_stack_swaps_a_server_and_hoptrace_reads_its_logs(tier, compose_stack):
    stack = ComposeStack(compose=V1, name="-v1")
    try:
        # No build: v1 runs the images the tier's stack built (the same names, set by `image:`).
        stack.use({app: "gunicorn" for app in APPS})
        for app in APPS:
            links = get(stack.port, f"/{app}/").json()["links"]
            assert {name: get(stack.port, link).status for name, link in links.items()} == LINK_STATUS, app

        stack.use({**{app: "gunicorn" for app in APPS}, "raw": "uwsgi"})
        reply = get(stack.port, "/raw/")
        assert reply.json()["server"] == "uwsgi"
        assert reply.header("X-Upstream-Protocol") == UPSTREAM_PROTOCOL["uwsgi"]
        assert get(stack.port, "/flask/").json()["server"] == "gunicorn"

        request_id = reply.header("X-Request-ID")
        shown = _hoptrace(stack.project, "show", request_id, "--json")
        out, err = shown.communicate(timeout=120)
        assert shown.returncode == 0, err
        assert "with docker-compose 1." in err  # --verbose names the tool it ran
        hops = {event["hop"] for event in json.loads(out)["events"]}
        assert {"nginx", "uwsgi"} <= hops, hops

        # follow runs v1's `logs --follow` itself; a request sent before that attaches is not seen,
        # so requests go on, one a second, until follow prints one of them.
        following = _hoptrace(stack.project, "follow", "--json")
        printed: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [printed.put(line) for line in following.stdout], daemon=True).start()
        sent, line = [], None
        try:
            for _ in range(30):
                sent.append(get(stack.port, "/flask/").header("X-Request-ID"))
                try:
                    line = printed.get(timeout=1)
                    break
                except queue.Empty:
                    continue
        finally:
            following.terminate()
            following.wait(10)
        assert line is not None, f"hoptrace follow printed nothing in 30 s: {following.stderr.read()}"
        assert json.loads(line)["request_id"] in sent
    finally:
        stack.stop()


def test_hoptrace_says_plainly_when_wsgilab_compose_names_no_tool():
    env = {**os.environ, compose_tool.ENV: "podman-compose"}
    done = subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "stats", "--compose"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ("hoptrace: WSGILAB_COMPOSE must be 'docker compose' or 'docker-compose', "
                                   "not 'podman-compose'")


@needs_v2
def test_hoptrace_lab_says_which_compose_tool_drives_the_stack(tmp_path):
    # Run where no compose project is (the lab then cannot reach nginx): the header comes first, on stderr.
    done = subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "lab", "forged-id", "--port", "1"],
                          cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != compose_tool.ENV},
                          capture_output=True, text=True, timeout=120)
    first = done.stderr.splitlines()[0]
    assert first.startswith("hoptrace lab: compose project (none running), driven with docker compose 2."), first
    assert done.returncode == 2 and done.stdout == ""
