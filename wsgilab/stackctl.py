"""Act on a running stack for the labs that restart or break parts of it.

Most labs only send requests. A few must change how the stack runs: a
worker-timeout lab needs a short ``WSGI_TIMEOUT`` and then a short nginx read
timeout, and a killed-worker lab must ``kill -9`` workers in the middle of a
request. They do it through a control object with two methods:

``reconfigure(settings)``
    restart the app servers and nginx with ``settings`` (names from
    ``SETTINGS``) on top of the stack's own; ``{}`` puts the defaults back.
``kill_workers(app)``
    SIGKILL every worker process of ``app``'s server (not its master, which
    then starts new ones) and return their PIDs.
``signal_server(app, name)``
    send the signal ``name`` ("HUP": reload) to ``app``'s server master.
``stop_app(app)`` / ``start_app(app)``
    stop ``app``'s server as ``docker compose stop`` does (SIGTERM, then
    SIGKILL after 10 s) and return how it ended; start it again.
``restart_app(app)``
    ``docker compose restart`` one app: stop it as above, then start it.
``app_state(app)``
    whether ``app``'s server runs, how it last exited, how often it was
    restarted, what its healthcheck says, and its last log lines.

``ComposeControl`` does both on a docker compose project, which is what
``hoptrace lab`` uses; the tests' native stack does the same to its own
processes. Inside a container, ``python -m wsgilab.stackctl kill-workers``
is how the compose control reaches the workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from collections.abc import Mapping
from pathlib import Path

from wsgilab.launch import WSGI_APP_PATTERN

#: What a lab may change, and what each one is.
SETTINGS = {
    "WSGI_TIMEOUT": "seconds a request may run before its worker is killed (gunicorn timeout, uWSGI harakiri)",
    "WSGI_THREADS": "threads per worker process",
    "WSGI_WORKERS": "worker processes per app server",
    "WSGI_BACKLOG": "connections the kernel queues for an app server while its workers are busy (backlog, listen)",
    "NGINX_CONNECT_TIMEOUT": "seconds nginx tries to connect to an app server (proxy/uwsgi_connect_timeout)",
    "NGINX_READ_TIMEOUT": "seconds nginx waits between two reads from an app server (proxy/uwsgi_read_timeout)",
    "DJANGO_WSGI_APP": "the callable the Django app's server imports, module:name",
    "FLASK_WSGI_APP": "the callable the Flask app's server imports, module:name",
    "RAW_WSGI_APP": "the callable the raw app's server imports, module:name",
}


#: The compose services that run an app (docker-compose.yml); nginx is the other one.
APP_SERVICES = ("django", "flask", "raw")


#: Seconds a stopped server gets before SIGKILL: docker compose's default.
STOP_GRACE_S = 10


@dataclass
class Stopped:
    """How a server ended when it was stopped: how long it took, and its state and exit code."""

    seconds: float
    state: str
    exit_code: int | None


@dataclass
class AppState:
    """How an app's server is doing, as its supervisor and healthcheck see it."""

    running: bool
    #: How the server last exited (None while it has not).
    exit_code: int | None
    #: How many times its supervisor restarted it; None where nothing restarts it (the native stack).
    restarts: int | None
    #: Docker's health status (starting, healthy, unhealthy), or the healthcheck's own verdict.
    health: str
    #: The server's last log lines.
    log: str


class ControlError(RuntimeError):
    """The stack could not be changed as asked; the message says what failed."""


def check_settings(settings: Mapping[str, str]) -> None:
    """Raise ControlError unless every setting is a known name with a value it takes.

    A ``*_WSGI_APP`` is ``module:name``; every other setting a whole number >= 1.
    """
    for name, value in settings.items():
        if name not in SETTINGS:
            raise ControlError(f"{name} is not a setting labs may change; these are: {', '.join(SETTINGS)}")
        if name.endswith("_WSGI_APP"):
            if not WSGI_APP_PATTERN.match(str(value)):
                raise ControlError(f"{name} must name a callable as module:name, not {value!r}")
        elif not str(value).isdigit() or int(value) < 1:
            raise ControlError(f"{name} must be a whole number of at least 1, not {value!r}")


def children(pid: int) -> list[int]:
    """The PIDs of the processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited while we looked
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def kill_workers_of(master: int) -> list[int]:
    """SIGKILL every child of the server's ``master`` process, that is its workers; return their PIDs.

    Both gunicorn's arbiter and uWSGI's master notice a worker that died and
    start a new one in its place.
    """
    workers = children(master)
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return workers


def server_master_in_container() -> int:
    """The app server's master in this container: the one child of PID 1 (docker's init).

    ``docker exec`` processes are not children of PID 1, so they never count.
    """
    masters = children(1)
    if len(masters) != 1:
        raise ControlError(f"expected one server process under PID 1, found {masters}")
    return masters[0]


class ComposeControl:
    """The stack control (see the module docstring) of a docker compose project, the current directory's by default."""

    def __init__(self, compose: list[str], project: str | None = None, env: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None) -> None:
        self.compose = [*compose, *(["--project-name", project] if project else [])]
        self.env = dict(env or {})
        self.cwd = cwd
        self.settings: dict[str, str] = {}
        #: How the stack ran before the first change, read off its containers.
        self.baseline: dict[str, str] | None = None

    def run(self, *args: str, timeout: float = 300) -> str:
        """One compose command with the current settings in its environment; ControlError if it fails."""
        env = {**os.environ, **self.env, **(self.baseline or {}), **self.settings}
        done = subprocess.run([*self.compose, *args], env=env, cwd=self.cwd, capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise ControlError(f"{' '.join(self.compose + list(args))} failed ({done.returncode}):\n"
                               f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return done.stdout

    def container(self, service: str) -> str:
        """The ID of the running container of ``service``."""
        ids = self.run("ps", "-q", service).split()
        if not ids:
            raise ControlError(f"no running container for the {service} service")
        return ids[0]

    def reconfigure(self, settings: Mapping[str, str]) -> None:
        """Recreate the containers whose settings changed; do not wait for them.

        Each service is named, with ``--no-deps``: asked to bring up nginx,
        compose would first wait for the apps' healthchecks (10 s apart).
        The caller waits instead, until each app answers through nginx, which
        looks a recreated container's new address up by itself.
        """
        check_settings(settings)
        if self.baseline is None:
            self.baseline = self.running_settings()
        self.settings = {name: str(value) for name, value in settings.items()}
        self.run("up", "-d", "--no-deps", *APP_SERVICES)
        self.run("up", "-d", "--no-deps", "nginx")

    def running_settings(self) -> dict[str, str]:
        """The compose settings the running stack was started with, read off its containers.

        A user may have started it with settings in the shell
        (``RAW_SERVER=uwsgi docker compose up -d``) rather than in .env; a lab
        that recreates containers must keep them, not fall back to .env.
        """
        ids = self.run("ps", "-q").split()
        if not ids:
            raise ControlError("the stack is not running (docker compose up -d)")
        found: dict[str, str] = {}
        for container in json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True,
                                                   check=True).stdout):
            service = container["Config"]["Labels"].get("com.docker.compose.service", "")
            env = dict(item.split("=", 1) for item in container["Config"]["Env"] if "=" in item)
            if service in APP_SERVICES:
                found[f"{service.upper()}_SERVER"] = env.get("WSGI_SERVER", "")
                found[f"{service.upper()}_WSGI_APP"] = env.get("WSGI_APP", "")
                found.update({name: env.get(name, "")
                              for name in ("WSGI_WORKERS", "WSGI_THREADS", "WSGI_TIMEOUT", "WSGI_BACKLOG")})
                if service == "django":
                    found["DJANGO_SECRET_KEY"] = env.get("DJANGO_SECRET_KEY", "")
            elif service == "nginx":
                found.update({name: env.get(name, "") for name in ("NGINX_CONNECT_TIMEOUT", "NGINX_READ_TIMEOUT")})
                found["WSGILAB_SERVER_NAMES"] = env.get("NGINX_SERVER_NAMES", "")
                for binding in (container["HostConfig"].get("PortBindings") or {}).get("8080/tcp") or []:
                    found["WSGILAB_HTTP_PORT"] = binding.get("HostPort", "")
        return {name: value for name, value in found.items() if value}

    def signal_server(self, app: str, name: str) -> None:
        """Send signal ``name`` to ``app``'s container; docker's init (PID 1) passes it to the server."""
        self.run("kill", "-s", name, app)

    def stop_app(self, app: str) -> Stopped:
        """``docker compose stop`` one app, timed; how its container ended."""
        container = self.container(app)
        started = time.monotonic()
        self.run("stop", "-t", str(STOP_GRACE_S), app)
        took = time.monotonic() - started
        state = subprocess.run(["docker", "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container],
                               capture_output=True, text=True).stdout.split()
        return Stopped(took, state[0] if state else "?", int(state[1]) if len(state) > 1 else None)

    def start_app(self, app: str) -> None:
        """Start a stopped app again (nginx finds its address, new or not, by itself)."""
        self.run("start", app)

    def restart_app(self, app: str) -> None:
        """``docker compose restart`` one app: SIGTERM, up to 10 s to finish, then a new start."""
        self.run("restart", "-t", str(STOP_GRACE_S), app)

    def app_state(self, app: str) -> AppState:
        """``app``'s container as Docker sees it (running, exit code, restarts, health) and its last log lines."""
        container = self.container(app)
        state = json.loads(subprocess.run(["docker", "inspect", "--format", "{{json .}}", container],
                                          capture_output=True, text=True, check=True).stdout)
        log = self.run("logs", "--no-color", "--tail", "80", app)
        return AppState(running=state["State"]["Running"], exit_code=state["State"]["ExitCode"],
                        restarts=state["RestartCount"],
                        health=(state["State"].get("Health") or {}).get("Status", "none"), log=log)

    def kill_workers(self, app: str) -> list[int]:
        """SIGKILL every worker of ``app``'s server, from inside its container."""
        done = subprocess.run(["docker", "exec", self.container(app), "python", "-m", "wsgilab.stackctl",
                               "kill-workers"], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise ControlError(f"killing {app}'s workers failed: {done.stderr.strip()}")
        return [int(pid) for pid in done.stdout.split()]


def main(argv: list[str] | None = None) -> int:
    """``python -m wsgilab.stackctl kill-workers``: run inside an app container by ComposeControl."""
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["kill-workers"]:
        print("usage: python -m wsgilab.stackctl kill-workers   (inside an app container)", file=sys.stderr)
        return 64
    try:
        killed = kill_workers_of(server_master_in_container())
    except ControlError as error:
        print(f"stackctl: {error}", file=sys.stderr)
        return 1
    print(" ".join(map(str, killed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
