"""How the labs change a running stack: the ``StackControl`` interface, and its docker compose side.

Most labs only send requests. A few must change how the stack runs (the
worker-timeout lab needs a short ``WSGI_TIMEOUT``; the killed-worker lab must
``kill -9`` workers mid-request), through a ``StackControl``. ``ComposeControl``
is the one ``hoptrace lab`` uses on a docker compose project; the tests'
native stack (tests/lab_stacks.py) implements the same interface on its own
processes, and a test checks that both do. Workers are reached from inside
their container: ``docker exec`` runs ``python -m wsgilab.container.workers``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from wsgilab.container.listen_socket import ListenSocket
from wsgilab.labs.container_clock import exited_at
from wsgilab.labs.container_sockets import ListeningSocketError, ListeningSockets, open_connections
from wsgilab.labs.database_control import DatabaseControl
from wsgilab.settings import LAB_SETTINGS, SettingError, check_value
from wsgilab.settings import SETTINGS as SETTINGS_TABLE

#: What a lab may change (wsgilab.settings marks them), and what each one does.
SETTINGS = {name: setting.does for name, setting in LAB_SETTINGS.items()}


#: The settings each kind of container gets under their own name (the per-app ones reach an app as WSGI_SERVER
#: and WSGI_APP, the server names reach nginx as NGINX_SERVER_NAMES).
_SAME_NAME_IN = {reader: [s.name for s in SETTINGS_TABLE.values() if s.read_by == reader
                          and s.name.startswith(("WSGI_", "NGINX_", "WSGILAB_DB_", "WSGILAB_TRAC"))]
                for reader in ("app", "nginx")}

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


@runtime_checkable
class StackControl(Protocol):
    """What a lab may do to a running stack, whichever way it runs (compose, or native processes)."""

    def reconfigure(self, settings: Mapping[str, str]) -> None:
        """Restart the app servers and nginx with ``settings`` (names from ``SETTINGS``) on top of the
        stack's own; ``{}`` puts the stack's own back. Returns without waiting for them to serve."""

    def kill_workers(self, app: str) -> list[int]:
        """SIGKILL every worker process of ``app``'s server (not its master, which starts new ones);
        return their PIDs."""

    def youngest_worker_age(self, app: str) -> float:
        """How many seconds ago the youngest worker of ``app``'s server started (0 with none)."""

    def signal_server(self, app: str, name: str) -> None:
        """Send the signal ``name`` ("HUP": reload) to ``app``'s server master."""

    def stop_app(self, app: str) -> Stopped:
        """Stop ``app``'s server as ``docker compose stop`` does (SIGTERM, SIGKILL after ``STOP_GRACE_S``)."""

    def start_app(self, app: str) -> None:
        """Start ``app``'s server again after ``stop_app``."""

    def restart_app(self, app: str) -> float:
        """``docker compose restart`` one app; when its old server exited (``time.monotonic()``)."""

    def app_state(self, app: str) -> AppState:
        """Whether ``app``'s server runs, how it last exited, its restarts, its health, its last log lines."""

    def nginx_version(self) -> tuple[int, ...]:
        """The version of the nginx in front, e.g. (1, 26, 3): some behaviour a lab shows changed with it."""

    def listen_socket(self, app: str) -> ListenSocket:
        """The kernel's view of ``app``'s server's listening port: backlog, queue, connections (listen_socket)."""


def parse_nginx_version(said: str) -> tuple[int, ...]:
    """The version in what ``nginx -v`` says ("nginx version: nginx/1.26.3"); ControlError if there is none."""
    match = re.search(r"nginx/(\d+(?:\.\d+)*)", said)
    if match is None:
        raise ControlError(f"`nginx -v` said no version: {said.strip()[:200]!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def check_settings(settings: Mapping[str, str]) -> None:
    """Raise ControlError unless every setting is one a lab may change, with a value the table takes."""
    for name, value in settings.items():
        if name not in LAB_SETTINGS:
            raise ControlError(f"{name} is not a setting labs may change; these are: {', '.join(LAB_SETTINGS)}")
        try:
            # As given: a lab sets a value, so an empty one is refused, not taken for the default.
            check_value(LAB_SETTINGS[name].kind, name, str(value))
        except SettingError as error:
            raise ControlError(str(error)) from None


class ComposeControl(DatabaseControl):
    """The ``StackControl`` of a docker compose project, the current directory's by default; its database side
    (restart, sessions) is in wsgilab.labs.database_control."""

    def __init__(self, compose: list[str], project: str | None = None, env: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None, listening: ListeningSockets | None = None) -> None:
        """``listening``: what an earlier control learnt of the same containers' sockets, to keep using."""
        self.compose = [*compose, *(["--project-name", project] if project else [])]
        self.env = dict(env or {})
        self.cwd = cwd
        self.settings: dict[str, str] = {}
        #: How the stack ran before the first change, read off its containers.
        self.baseline: dict[str, str] | None = None
        #: What it learnt of the app containers' listening sockets, so a second look is quick.
        self._listening = listening or ListeningSockets()

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

        The apps come up with their dependencies (the database, running already): with ``--no-deps``, compose,
        which counts ``depends_on`` in the hash it compares, would recreate every app. nginx comes up with
        ``--no-deps``, being recreated anyway: with its dependencies, compose would first wait for the apps'
        healthchecks, which an app broken on purpose never passes. The caller waits instead, until each app
        answers through nginx (which looks a recreated container's new address up by itself).
        """
        check_settings(settings)
        if self.baseline is None:
            self.baseline = self.running_settings()
        self.settings = {name: str(value) for name, value in settings.items()}
        self.run("up", "-d", *APP_SERVICES)
        self.run("up", "-d", "--no-deps", "nginx")

    def running_settings(self) -> dict[str, str]:
        """The compose settings the running stack was started with, read off its containers.

        A user may have started it with settings in the shell (``RAW_SERVER=uwsgi docker compose up -d``)
        rather than in .env; a lab that recreates containers must keep them, not fall back to .env.
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
                interval_ns = ((container["Config"].get("Healthcheck") or {}).get("Interval") or 0)
                if interval_ns:
                    found["WSGILAB_HEALTHCHECK_INTERVAL"] = str(interval_ns // 10**9)
                found[f"{service.upper()}_SERVER"] = env.get("WSGI_SERVER", "")
                found[f"{service.upper()}_PROTOCOL"] = env.get("WSGI_PROTOCOL", "")
                found[f"{service.upper()}_WSGI_APP"] = env.get("WSGI_APP", "")
                found.update({name: env.get(name, "") for name in _SAME_NAME_IN["app"]})
                if service == "django":
                    found["DJANGO_SECRET_KEY"] = env.get("DJANGO_SECRET_KEY", "")
            elif service == "nginx":
                found.update({name: env.get(name, "") for name in _SAME_NAME_IN["nginx"]})
                found["WSGILAB_SERVER_NAMES"] = env.get("NGINX_SERVER_NAMES", "")
                sysctls = container["HostConfig"].get("Sysctls") or {}
                found["NGINX_TCP_TW_REUSE"] = sysctls.get("net.ipv4.tcp_tw_reuse", "")
                for binding in (container["HostConfig"].get("PortBindings") or {}).get("8080/tcp") or []:
                    found["WSGILAB_HTTP_PORT"] = binding.get("HostPort", "")
            elif service == "db":  # its command's `-c max_connections=N` (docker-compose.yml)
                found.update({"WSGILAB_DB_MAX_CONNECTIONS": arg.partition("=")[2] for arg in
                              container["Config"]["Cmd"] or [] if arg.startswith("max_connections=")})
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

    def restart_app(self, app: str) -> float:
        """``docker compose restart`` one app: SIGTERM, up to 10 s to finish, then a new start."""
        self.run("restart", "-t", str(STOP_GRACE_S), app)
        return exited_at(self.container(app))

    def scale_app(self, app: str, replicas: int) -> None:
        """Run ``replicas`` containers of ``app`` (``up --scale``), leaving the running ones as they are."""
        self.run("up", "-d", "--no-recreate", "--scale", f"{app}={replicas}", app)

    def replicas(self, app: str) -> list[str]:
        """The ids of ``app``'s running containers."""
        return self.run("ps", "-q", app).split()

    def open_connections(self, container: str, port: int) -> int:
        """How many TCP connections to ``port`` are established in ``container``."""
        return open_connections(container, port)

    def kill_replica(self, container: str) -> str:
        """SIGKILL one replica's container at once (``docker kill``); its host name (its trace lines' replica)."""
        return kill_container(container)

    def app_state(self, app: str) -> AppState:
        """``app``'s container as Docker sees it (running, exit code, restarts, health) and its last log lines."""
        container = self.container(app)
        state = json.loads(subprocess.run(["docker", "inspect", "--format", "{{json .}}", container],
                                          capture_output=True, text=True, check=True).stdout)
        log = self.run("logs", "--no-color", "--tail", "80", app)
        return AppState(running=state["State"]["Running"], exit_code=state["State"]["ExitCode"],
                        restarts=state["RestartCount"],
                        health=(state["State"].get("Health") or {}).get("Status", "none"), log=log)

    def nginx_version(self) -> tuple[int, ...]:
        """The nginx container's version (``nginx -v`` inside it)."""
        done = subprocess.run(["docker", "exec", self.container("nginx"), "nginx", "-v"], capture_output=True,
                              text=True, timeout=30)
        return parse_nginx_version(done.stderr + done.stdout)

    def listen_socket(self, app: str) -> ListenSocket:
        """The kernel's view of ``app``'s listening port, in its container (wsgilab.labs.container_sockets)."""
        try:
            return self._listening.look(self.container(app))
        except ListeningSocketError as error:
            raise ControlError(str(error)) from None

    def kill_workers(self, app: str) -> list[int]:
        return [int(pid) for pid in self._workers(app, "kill-workers").split()]

    def youngest_worker_age(self, app: str) -> float:
        return float(self._workers(app, "youngest-worker-age"))

    def _workers(self, app: str, command: str) -> str:
        """What ``python -m wsgilab.container.workers COMMAND`` prints in ``app``'s container."""
        done = subprocess.run(["docker", "exec", self.container(app), "python", "-m", "wsgilab.container.workers",
                               command], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise ControlError(f"{command} in {app}'s container failed: {done.stderr.strip()}")
        return done.stdout


def kill_container(container: str) -> str:
    """SIGKILL a container at once (``docker kill``); its host name, which its trace lines name as the replica."""
    name = subprocess.run(["docker", "inspect", "--format", "{{.Config.Hostname}}", container],
                          capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["docker", "kill", container], capture_output=True, check=True)
    return name
