"""``scripts/swarm up|down|status|leave``: the stack on Docker Swarm, from the same docker-compose.yml and .env.

    scripts/swarm up                 build the images, start a one-node swarm if there is none, deploy
    FLASK_REPLICAS=3 scripts/swarm up   the same, or an update of the running stack, with three flask replicas
    scripts/swarm status             the stack's services and their replicas
    scripts/swarm down               remove the stack, keeping the database's data and the swarm that holds its
                                     passwords (a swarm scripts/swarm started is left only without them)
    scripts/swarm down --volumes     remove the stack, the database's data and passwords, and the swarm if
                                     scripts/swarm started it
    scripts/swarm leave              leave a swarm scripts/swarm started and down left for other containers

``--stack NAME`` (default wsgilab) deploys under another name. Then read the
traces with ``hoptrace --stack wsgilab follow`` (or ``show ID``, ``stats``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from wsgilab.hoptrace.compose_tool import V2, ComposeToolError, version
from wsgilab.settings import SettingError, check_value
from wsgilab.swarm import database, engine
from wsgilab.swarm.render import RenderError, published_port, stack_file

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILES = (REPO / "docker-compose.yml", REPO / "scripts" / "swarm.yml")
APPS = ("django", "flask", "raw")


def say(message: str) -> None:
    print(f"swarm: {message}", file=sys.stderr, flush=True)


def compose(*args: str, capture: bool = True) -> str:
    """``docker compose -f docker-compose.yml -f scripts/swarm.yml ARGS`` in the checkout (v2 only)."""
    if version(V2) is None:
        raise ComposeToolError("scripts/swarm renders the stack with `docker compose` (v2), which does not run "
                               "here (scripts/compose-v2 installs it)")
    files = [arg for path in COMPOSE_FILES for arg in ("--file", str(path))]
    done = subprocess.run([*V2, *files, *args], cwd=REPO, capture_output=capture, text=True)
    if done.returncode != 0:
        raise engine.SwarmError(f"`docker compose {' '.join(args)}` failed: {(done.stderr or '').strip()[-1500:]}")
    return done.stdout or ""


def merged_config() -> dict:
    """docker-compose.yml and scripts/swarm.yml merged, with .env's and the shell's settings filled in."""
    return json.loads(compose("config", "--format", "json"))


def app_answers(port: int, app: str) -> bool:
    """Whether nginx on 127.0.0.1:``port`` answers ``/APP/`` with 200."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/{app}/", headers={"Host": "localhost"})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status == 200
    except (OSError, urllib.error.URLError):
        return False


def up(stack: str, build: bool) -> int:
    config = merged_config()
    publish = check_value("publish", "WSGILAB_SWARM_PUBLISH", str(config.get("x-swarm-publish") or "loopback"))
    rendered = stack_file(config, stack)
    port = published_port(config)
    if build:
        say("building the images (docker compose build): a swarm builds nothing itself")
        compose("build", "--quiet")
    state = engine.swarm_state()
    if state == "inactive":
        engine.init(say)
    elif state != "active":
        raise engine.SwarmError(f"the engine's swarm state is {state!r}: fix it (docker info) and run again")
    engine.check_publish(publish, say)
    database.pin_node(say)
    chosen = str((config["services"].get("db-secrets", {}).get("environment") or {}).get("WSGILAB_DB_PASSWORD") or "")
    database.ensure_secrets(stack, chosen.strip(), say)
    if not engine.stack_services(stack) and engine.port_answers(port):
        raise engine.SwarmError(f"something already listens on 127.0.0.1:{port} (the compose stack? "
                                "`docker compose down`, or WSGILAB_HTTP_PORT=another port)")
    replicas = {app: rendered["services"][app]["deploy"].get("replicas", 1) for app in APPS}
    say(f"deploying stack {stack}: " + ", ".join(f"{app} x{count}" for app, count in replicas.items()))
    engine.deploy(stack, rendered)
    engine.wait_converged(stack, lambda: all(app_answers(port, app) for app in APPS))
    say(f"up: http://127.0.0.1:{port}/ (published on {'127.0.0.1 only' if publish == 'loopback' else 'every address'}"
        f"); traces: hoptrace --stack {stack} follow")
    return 0


def down(stack: str, volumes: bool) -> int:
    if engine.swarm_state() == "active":
        say(f"removing stack {stack}")
        engine.remove(stack, say)
        if volumes:
            database.remove_data(stack, say)
        elif database.has_data(stack):
            # Leaving the swarm would delete the passwords' secrets, and the kept data only knows those.
            say(f"the swarm stays: it holds the database's passwords, and its data ({stack}_db-data) is kept; "
                f"`scripts/swarm down --volumes --stack {stack}` removes both and leaves it")
            return 0
        engine.leave(say)
    else:
        say("the engine is in no swarm: nothing to remove")
    return 0


def leave() -> int:
    """Leave the one-node swarm scripts/swarm started, once no other container needs Docker's DNS kept, and no
    stack's database data is kept here (leaving would delete the passwords it knows)."""
    if engine.swarm_state() == "active":
        kept = database.stacks_with_data()
        if kept and engine.created_here():
            raise engine.SwarmError(f"the database data of stack {', '.join(kept)} is kept here, and leaving the "
                                    "swarm deletes the passwords it was made with: `scripts/swarm down --volumes "
                                    "--stack NAME` first (it deletes the data)")
        engine.leave(say)
    return 0


def status(stack: str) -> int:
    services = engine.stack_services(stack) if engine.swarm_state() == "active" else {}
    if not services:
        say(f"no stack {stack} is deployed")
        return 1
    for name, replicas in sorted(services.items()):
        print(f"{name:<24} {replicas}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/swarm", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("up", "down", "status", "leave"))
    parser.add_argument("--stack", default="wsgilab", help="the stack's name (default wsgilab)")
    parser.add_argument("--no-build", action="store_true", help="deploy the images as they are, unbuilt")
    parser.add_argument("--volumes", action="store_true",
                        help="with down: remove the database's data volume and its passwords' secrets too")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return up(args.stack, build=not args.no_build)
        if args.command == "leave":
            return leave()
        return down(args.stack, args.volumes) if args.command == "down" else status(args.stack)
    except (engine.SwarmError, RenderError, SettingError, ComposeToolError) as error:
        say(f"error: {error}")
        return 2
