"""The two ways the tests run the stack, behind one interface.

``NativeStack`` starts nginx, gunicorn and uWSGI as processes on loopback:
fast, and every log is a file the test can read. ``ComposeStack`` runs the
real user path, ``docker compose`` on the Docker engine. Both use the very
same config files (nginx/, gunicorn.conf.py, uwsgi.ini) and the same launcher.

Either one is asked to ``use(servers)``, a mapping app -> "gunicorn" | "uwsgi",
and then answers on ``port`` through nginx.
"""

from __future__ import annotations

import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import lab_http

from wsgilab import settings
from wsgilab.container import healthcheck, listen_socket
from wsgilab.container.workers import kill_workers_of, youngest_worker_age_of
from wsgilab.hoptrace.compose_tool import compose_command
from wsgilab.hoptrace.sources import project_log_lines
from wsgilab.labs.container_sockets import ListeningSockets
from wsgilab.labs.control import (APP_SERVICES, STOP_GRACE_S, AppState, ComposeControl, Stopped, check_settings,
                                  parse_nginx_version)
from wsgilab.labs.database_control import Session
from wsgilab.labs.kit import Target
from wsgilab.container.launch import server_environment
from native_database import SERVER_SETTINGS as DATABASE_SETTINGS
from native_database import NativeDatabase

REPO = Path(__file__).resolve().parent.parent
APPS = settings.APPS
#: The servers the whole suite runs on, each test once per server where it says so. Granian and Waitress have
#: tests of their own (tests/test_more_servers.py): the native tier starts them only while a test uses them.
SERVERS = ("gunicorn", "uwsgi")
#: The servers that, once a test has started them, keep running while unused: the suite's two, and uvicorn, which
#: tests/test_asgi.py swaps in and out app by app (a uvicorn worker idles on its event loop).
KEPT = (*SERVERS, "uvicorn")

#: Where each app lives and what its server imports (as in docker-compose.yml).
APP_DIRS = {"django": "django_app", "flask": "flask_app", "raw": "raw_wsgi_app"}
WSGI_APPS = settings.APP_CALLABLES

#: Put in every app's environment; /environ must never show it.
SECRET_SENTINEL = "sentinel-secret-" + os.urandom(8).hex()
#: The database's password in the compose tier's stacks: in no app container's environment, unlike the above.
DB_PASSWORD_SENTINEL = "sentinel-db-password-" + os.urandom(8).hex()

#: The database labs run once, each server serving some of the apps (so once per server, as the labs' pages'
#: runs have it): what they show is the apps' and PostgreSQL's, and where a server changes it (slow-query),
#: each one is in it.
BOTH_SERVERS = {"django": "uwsgi", "flask": "gunicorn", "raw": "gunicorn"}

#: The per-app settings' prefixes (DJANGO_WSGI_APP and the like).
APP_PREFIXES = tuple(f"{app.upper()}_" for app in APPS)

#: Two workers per app server keep six of them light on a 2-core machine.
TEST_WORKERS = "2"


class StackError(RuntimeError):
    """The stack did not come up as asked; the message carries the logs that say why."""


def free_port() -> int:
    """A TCP port on loopback that nothing uses right now, below the kernel's range of ephemeral ports.

    A stack takes its ports up front and starts a server on one minutes later (a swap to uvicorn, say). A port
    from the ephemeral range can be taken meanwhile as the local end of an outgoing connection, and the server's
    listen() then fails with "Address already in use" (seen in CI); no outgoing connection takes a port below it.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.randrange(10000, max(low, 10001))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise StackError(f"no free port on loopback between 10000 and {low}")


def _tail(path: Path, lines: int = 30) -> str:
    """The log's last ``lines``, after the first lines of a Rust panic (Granian's) that they leave out: its
    message comes first and a backtrace longer than the tail after it."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    panic = next((at for at, line in enumerate(text) if "panicked at" in line), len(text))
    head, kept = text[panic:min(panic + 3, len(text) - lines)], text[-lines:]  # head: what the tail leaves out
    return "\n".join([*head, "...", *kept] if head else kept)


def wait_until_served(port: int, servers: dict[str, str], deadline_s: float = 60.0,
                      protocols: dict[str, str] | None = None) -> None:
    """Wait until nginx on ``port`` routes every app to the server ``servers`` names, over the protocol
    ``protocols`` names (by default, each server's own).

    nginx says which protocol it used (X-Upstream-Protocol) and the app says
    which server built its environ, so this proves nginx followed the setting.
    """
    expected = {app: (settings.protocol_of(server, (protocols or {}).get(app, "")), server)
                for app, server in servers.items()}
    seen: dict[str, object] = {}
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for app in servers:
            try:
                reply = lab_http.get(port, f"/{app}/", timeout=5)
                seen[app] = (reply.header("X-Upstream-Protocol"),
                             reply.json().get("server") if reply.status == 200 else reply.status)
            except (OSError, ValueError) as error:
                seen[app] = repr(error)
        if seen == expected:
            return
        time.sleep(0.1)  # a restarted app is served about when its healthcheck passes: look often, it is cheap
    raise StackError(f"nginx on port {port} did not serve {expected} in {deadline_s:.0f}s; last seen {seen}")


def protocols_of(settings: dict[str, str]) -> dict[str, str]:
    """The protocol each app's server speaks where a setting chose one (``<APP>_PROTOCOL``)."""
    return {app: settings[f"{app.upper()}_PROTOCOL"] for app in APPS if settings.get(f"{app.upper()}_PROTOCOL")}


def nginx_version_of(nginx: str) -> tuple[int, ...]:
    """The version the nginx binary ``nginx`` (a path, or a name on PATH) says it is."""
    done = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=30)
    return parse_nginx_version(done.stderr + done.stdout)


def nginx_binary() -> str | None:
    """The nginx to run: on the PATH, or Debian's in /usr/sbin (not on a user's PATH); None where there is none."""
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


class NativeStack:
    """nginx and the app servers as processes on 127.0.0.1 (gunicorn and uWSGI for every app at once, Granian and
    Waitress while a test uses them), and PostgreSQL."""

    def __init__(self, app_env: dict[str, str] | None = None) -> None:
        """``app_env`` is added to every app server's environment (bench/ turns tracing off with it), and what of
        it nginx reads to nginx's (WSGILAB_TRACE_SAMPLE)."""
        self.app_env = dict(app_env or {})
        self.nginx = nginx_binary()
        if self.nginx is None:
            raise StackError("nginx is not installed; the native tier needs it (apt-get install nginx)")
        # nginx's workers may run as another user (nobody, when the tests run
        # as root), so its run directory sits in /tmp, readable by all.
        self.workdir = Path(tempfile.mkdtemp(prefix="wsgi-lab-native-", dir="/tmp"))
        self.workdir.chmod(0o755)
        self.port = free_port()
        self.backend_ports = {(app, server): free_port() for app in APPS for server in settings.SERVERS}
        #: The apps' PostgreSQL (tests/native_database.py): every server of an app shares it, as replicas do.
        self.database = NativeDatabase(self.workdir, free_port())
        #: The database's own settings from the shell or app_env (WSGILAB_DB_LOG_MIN_MS=-1 for a bench), as compose
        #: takes them from the shell: the base a lab's settings go on top of.
        self._database_base = {k: v for k, v in {**os.environ, **self.app_env}.items() if k in DATABASE_SETTINGS}
        self.database.settings = dict(self._database_base)
        self.processes: dict[str, subprocess.Popen] = {}
        self.servers: dict[str, str] | None = None
        #: What a lab changed (wsgilab.labs.control.SETTINGS), on top of the defaults.
        self.settings: dict[str, str] = {}

    def log_path(self, name: str) -> Path:
        """The file a process of this stack writes its stdout and stderr to."""
        return self.workdir / f"{name}.log"

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
        log = open(self.log_path(name), "ab")
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        log.close()
        self.processes[name] = process
        return process

    def app_environment(self, app: str, server: str) -> dict[str, str]:
        """The environment the launcher gets for one app on one server, as compose would set it."""
        return {
            **os.environ,
            "WSGI_SERVER": server,
            "WSGI_PROTOCOL": self.settings.get(f"{app.upper()}_PROTOCOL", ""),
            "WSGI_INTERFACE": self.settings.get(f"{app.upper()}_INTERFACE", ""),
            "WSGI_APP": self.settings.get(f"{app.upper()}_WSGI_APP", WSGI_APPS[app]),
            "ASGI_APP": self.settings.get(f"{app.upper()}_ASGI_APP", settings.ASGI_CALLABLES[app]),
            "WSGI_MIDDLEWARE": self.settings.get(f"{app.upper()}_WSGI_MIDDLEWARE", ""),
            "WSGI_MIDDLEWARE_PATH": str(REPO / "middleware"),
            "SCRIPT_NAME": f"/{app}",
            "WSGI_BIND": f"127.0.0.1:{self.backend_ports[app, server]}",
            "WSGI_WORKERS": TEST_WORKERS,
            "WSGI_CONFIG_DIR": str(REPO),
            "DJANGO_SECRET_KEY": SECRET_SENTINEL,
            "FLASK_SECRET_KEY": SECRET_SENTINEL,
            **self.database.app_environment(),
            **self.app_env,
            # What a lab changed that the apps read (each app's own only for it: DJANGO_DB_CONNECTIONS).
            **{name: value for name, value in self.settings.items()
               if settings.SETTINGS[name].read_by == "app" and not name.startswith(APP_PREFIXES)
               or name == "DJANGO_DB_CONNECTIONS" and app == "django"},
        }

    def start(self) -> None:
        """Start PostgreSQL, then gunicorn and uWSGI for every app, and wait until each answers its healthcheck."""
        self.database.create()
        self._start_servers([key for key in self.backend_ports if key[1] in SERVERS])

    def _start_servers(self, which: list[tuple[str, str]], healthy: list[tuple[str, str]] | None = None) -> None:
        """Start the servers ``which`` and wait until those in ``healthy`` (all, by default) answer."""
        for (app, server) in which:
            env = self.app_environment(app, server)
            launch = [sys.executable, "-m", "wsgilab.container.launch"]
            self._spawn(f"{app}-{server}", launch, env, REPO / APP_DIRS[app])
        deadline = time.monotonic() + 60
        for (app, server) in which if healthy is None else healthy:
            name = f"{app}-{server}"
            env = server_environment(self.app_environment(app, server))
            while True:
                if (code := self.processes[name].poll()) is not None:
                    raise StackError(f"{name} exited with {code}:\n{_tail(self.log_path(name))}")
                try:
                    if healthcheck.check(env, timeout=2) == 200:
                        break
                except (OSError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise StackError(f"{name} did not become healthy:\n{_tail(self.log_path(name))}")
                time.sleep(0.2)

    def use(self, servers: dict[str, str], alone: bool = False) -> None:
        """Render nginx's config for ``servers`` and (re)start nginx on it.

        ``alone``: only those servers run, one per app as in compose, for a
        lab that counts each app's database sessions or workers; the others
        stop, and the next ``use`` without it starts them again, on the
        settings of the moment.
        """
        # Granian and Waitress run only while used; the suite's two servers and uvicorn, unless ``alone``, until
        # a reconfigure changes them while unused (it stops them; they start here when next used).
        self._stop(*[self._name(key) for key in self.backend_ports
                     if servers[key[0]] != key[1] and (alone or key[1] not in KEPT)])
        # A server that exited by itself (Granian ends on a worker's "crash loop", say) starts again, too.
        for name in [name for name, process in self.processes.items()
                     if name != "nginx" and process.poll() is not None]:
            del self.processes[name]
        stopped = [key for key in self.backend_ports
                   if self._name(key) not in self.processes and servers[key[0]] == key[1]]
        if stopped:
            self._start_servers(stopped, healthy=[key for key in stopped
                                                  if f"{key[0].upper()}_WSGI_APP" not in self.settings])
        if servers == self.servers:
            return
        self._stop("nginx")
        # Every trace recorded unless this stack samples (a shell's WSGILAB_TRACE_SAMPLE would break the tests).
        env = {**os.environ, "NGINX_LISTEN": f"127.0.0.1:{self.port}", "NGINX_BINARY": self.nginx,
               **settings.EVERY_TRACE, **self._nginx_settings()}
        for app, server in servers.items():
            env[f"{app.upper()}_SERVER"] = server
            env[f"{app.upper()}_UPSTREAM"] = f"127.0.0.1:{self.backend_ports[app, server]}"
        rundir = self.workdir / "nginx"
        subprocess.run([str(REPO / "nginx" / "render-config"), str(rundir)], env=env, check=True,
                       capture_output=True)
        self._spawn("nginx", [self.nginx, "-p", f"{rundir}/", "-c", str(rundir / "nginx.conf"),
                              "-e", "stderr", "-g", "daemon off;"], env, self.workdir)
        try:
            wait_until_served(self.port, servers, deadline_s=20, protocols=self.protocols())
        except StackError as error:
            raise StackError(f"{error}\nnginx log:\n{_tail(self.log_path('nginx'))}") from None
        self.servers = dict(servers)

    def follow_logs_command(self) -> list[str]:
        """A command that prints every hop's new log lines as they are written, until stopped."""
        return ["tail", "-n", "0", "-F", *map(str, sorted(self.workdir.glob("*.log")))]

    def reconfigure(self, settings: dict[str, str]) -> None:
        """Restart what ``settings`` change (see wsgilab.labs.control), nginx included; {} restores the defaults.

        A server whose app was pointed at other code (``<APP>_WSGI_APP``) may
        be broken on purpose: it is started, not waited for.
        """
        check_settings(settings)
        if settings == self.settings:
            return
        before = {key: self.app_environment(*key) for key in self.backend_ports}
        nginx_before = self._nginx_settings()
        database_before = self._database_settings()
        self.settings = dict(settings)
        if self._database_settings() != database_before:
            self.database.restart({**self._database_base, **self._database_settings()})
        # Only the servers nginx sends to restart now: a changed one not in use stops, and starts on the
        # settings of the moment when a use() picks it (half the restarts, in a phase on one server).
        changed = [key for key in self.backend_ports
                   if self.app_environment(*key) != before[key] and self._name(key) in self.processes]
        self._stop(*map(self._name, changed))
        in_use = [key for key in changed if self.servers and self.servers[key[0]] == key[1]]
        self._start_servers(in_use, healthy=[(app, server) for app, server in in_use
                                             if f"{app.upper()}_WSGI_APP" not in self.settings])
        if self._nginx_settings() != nginx_before:
            servers, self.servers = self.servers, None
            if servers:
                self.use(servers)

    @staticmethod
    def _name(key: tuple[str, str]) -> str:
        return f"{key[0]}-{key[1]}"

    def _nginx_settings(self) -> dict[str, str]:
        """What nginx's config is rendered with: the settings nginx reads, from app_env (a bench's) and a lab's."""
        chosen = {**self.app_env, **self.settings}
        return {name: value for name, value in chosen.items() if name in settings.SETTINGS
                and (settings.SETTINGS[name].read_by == "nginx" or name.endswith("_PROTOCOL"))}

    def protocols(self) -> dict[str, str]:
        return protocols_of(self.settings)

    def _database_settings(self) -> dict[str, str]:
        return {name: value for name, value in self.settings.items() if name in DATABASE_SETTINGS}

    def restart_database(self) -> None:
        """Restart PostgreSQL as ``docker compose restart db`` does: SIGINT (its fast shutdown), then a start."""
        self.database.restart()

    def database_sessions(self) -> list[Session]:
        """PostgreSQL's client sessions now (pg_stat_activity), psql's own left out."""
        return self.database.sessions()

    def database_healthchecks(self) -> list[tuple[float, float]]:
        """None: nothing checks the native PostgreSQL's health while it runs (compose's db has pg_isready)."""
        return []

    def kill_workers(self, app: str) -> list[int]:
        """SIGKILL every worker of the server ``app`` runs on now; its master starts new ones."""
        return kill_workers_of(self._server_of(app).pid)

    def youngest_worker_age(self, app: str) -> float:
        return youngest_worker_age_of(self._server_of(app).pid)

    def _server_of(self, app: str) -> subprocess.Popen:
        assert self.servers is not None, "use() the stack first"
        return self.processes[f"{app}-{self.servers[app]}"]

    def nginx_version(self) -> tuple[int, ...]:
        """The host nginx's version (Debian bookworm's is 1.22, the image's newer)."""
        return nginx_version_of(self.nginx)

    def listen_socket(self, app: str) -> listen_socket.ListenSocket:
        """The kernel's view of the port the server ``app`` runs on listens at (on loopback, this namespace)."""
        return listen_socket.read(self.backend_ports[app, self.servers[app]])

    def signal_server(self, app: str, name: str) -> None:
        """Send signal ``name`` ("HUP") to the master of the server ``app`` runs on now."""
        self._server_of(app).send_signal(getattr(signal, f"SIG{name}"))

    def stop_app(self, app: str) -> Stopped:
        """Stop the server ``app`` runs on as docker compose would: SIGTERM, SIGKILL after the grace period."""
        process = self._server_of(app)
        started = time.monotonic()
        process.terminate()
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return Stopped(time.monotonic() - started, "exited", process.returncode)

    def start_app(self, app: str) -> None:
        """Start the server ``app`` runs on again, once it has stopped."""
        name = f"{app}-{self.servers[app]}"
        self.processes.pop(name)
        self._start_servers([(app, self.servers[app])])

    def restart_app(self, app: str) -> float:
        """Stop the server ``app`` runs on as docker compose would, then start it again; when it had stopped."""
        self.stop_app(app)
        stopped = time.monotonic()
        self.start_app(app)
        return stopped

    def app_state(self, app: str) -> AppState:
        """Whether ``app``'s server runs, how it exited, and what the healthcheck says; nothing restarts it here."""
        server = self.servers[app]
        process = self.processes[f"{app}-{server}"]
        try:
            status = healthcheck.check(server_environment(self.app_environment(app, server)), timeout=2)
            health = "healthy" if status == 200 else f"unhealthy: {status}"
        except (OSError, ValueError) as error:
            health = f"unhealthy: {error}"
        return AppState(running=process.poll() is None, exit_code=process.poll(), restarts=None,
                                 health=health, log=_tail(self.log_path(f"{app}-{server}"), 80))

    def _stop(self, *names: str) -> None:
        """Stop the processes ``names``, all signalled first and then waited for (each stop takes a few tenths)."""
        stopping = []
        for name in names:
            process = self.processes.pop(name, None)
            if process is not None and process.poll() is None:
                # nginx and gunicorn stop gracefully on SIGQUIT/SIGTERM; uWSGI (die-on-term) on SIGTERM.
                process.send_signal(signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
                stopping.append(process)
        deadline = time.monotonic() + 15
        for process in stopping:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop(self) -> None:
        """Stop every process this stack started (by its own PID) and remove its files."""
        self._stop(*self.processes)
        self.database.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class ComposeStack:
    """The stack as users run it: docker compose, on the Docker engine."""

    def __init__(self, compose: list[str] | None = None, name: str = "") -> None:
        """A test project driven by ``compose`` (default: the tool ``compose_command()`` picks, v2 first)."""
        try:
            self.compose = compose or compose_command()
        except FileNotFoundError as error:
            raise StackError(str(error)) from None
        self.project = f"wsgilab-test-{os.getpid()}{name}"
        self.port = free_port()
        self._listening = ListeningSockets()
        self.servers: dict[str, str] | None = None
        #: What a lab changed (wsgilab.labs.control.SETTINGS), on top of the defaults.
        self.settings: dict[str, str] = {}

    def run(self, *args: str, servers: dict[str, str] | None = None, timeout: float = 1800) -> str:
        """Run one compose command for this test project; raise StackError with its output on failure."""
        env = self.environment(servers or self.servers)
        argv = [*self.compose, "--project-name", self.project, *args]
        done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise StackError(f"{' '.join(argv)} failed ({done.returncode}):\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    def environment(self, servers: dict[str, str] | None) -> dict[str, str]:
        """What compose commands of this project get: the test's port, workers, secret, servers and settings."""
        env = {**os.environ, "WSGILAB_HTTP_PORT": str(self.port), "WSGI_WORKERS": TEST_WORKERS,
               "DJANGO_SECRET_KEY": SECRET_SENTINEL, "WSGILAB_DB_PASSWORD": DB_PASSWORD_SENTINEL,
               **settings.EVERY_TRACE, **self.settings}
        for app, server in (servers or {}).items():
            env[f"{app.upper()}_SERVER"] = server
        return env

    def start(self) -> None:
        """Build the images (reusing Docker's layer cache)."""
        self.run("build")

    def use(self, servers: dict[str, str], alone: bool = True) -> None:
        """Bring the stack up with ``servers``; compose recreates what changed, nginx included.

        It runs one server per app, so always ``alone`` (NativeStack.use).
        Compose starts nginx once the apps are healthy; nginx's own
        healthcheck is not waited for (its first comes an interval after it
        starts): a test about health waits for it (``wait_until_healthy``).
        """
        if servers == self.servers:
            return
        try:
            self.run("up", "-d", servers=servers, timeout=300)
            wait_until_served(self.port, servers, protocols=protocols_of(self.settings))
        except StackError as error:
            logs = self.run("logs", "--no-color", "--tail", "40", servers=servers)
            raise StackError(f"{error}\n{logs}") from None
        self.servers = dict(servers)

    def wait_until_healthy(self, deadline_s: float = 90.0) -> None:
        """Wait until Docker reports every container of the project healthy."""
        deadline = time.monotonic() + deadline_s
        while True:
            ids = self.container_ids()
            states = subprocess.run(["docker", "inspect", "--format", "{{.Name}} {{.State.Health.Status}}", *ids],
                                    capture_output=True, text=True).stdout.split("\n")
            unhealthy = [line for line in states if line and not line.endswith(" healthy")]
            if ids and not unhealthy:
                return
            if time.monotonic() > deadline:
                raise StackError(f"containers not healthy after {deadline_s:.0f}s: {unhealthy}")
            time.sleep(1)

    def container_ids(self) -> list[str]:
        """The IDs of this project's containers."""
        return self.run("ps", "-q").split()

    def reconfigure(self, settings: dict[str, str]) -> None:
        """Recreate the stack with ``settings`` (see wsgilab.labs.control); {} restores the defaults."""
        check_settings(settings)
        if settings == self.settings:
            return
        self.settings = dict(settings)
        if self.servers:
            self.control().reconfigure(settings)

    def kill_workers(self, app: str) -> list[int]:
        """SIGKILL every worker of ``app``'s server, from inside its container."""
        return self.control().kill_workers(app)

    def youngest_worker_age(self, app: str) -> float:
        return self.control().youngest_worker_age(app)

    def nginx_version(self) -> tuple[int, ...]:
        return self.control().nginx_version()

    def signal_server(self, app: str, name: str) -> None:
        self.control().signal_server(app, name)

    def stop_app(self, app: str) -> Stopped:
        return self.control().stop_app(app)

    def start_app(self, app: str) -> None:
        self.control().start_app(app)
        wait_until_served(self.port, self.servers, protocols=protocols_of(self.settings))

    def restart_app(self, app: str) -> float:
        return self.control().restart_app(app)

    def app_state(self, app: str) -> AppState:
        return self.control().app_state(app)

    def listen_socket(self, app: str) -> listen_socket.ListenSocket:
        return self.control().listen_socket(app)

    def restart_database(self) -> None:
        self.control().restart_database()

    def database_sessions(self) -> list[Session]:
        return self.control().database_sessions()

    def database_healthchecks(self) -> list[tuple[float, float]]:
        return self.control().database_healthchecks()

    def scale_app(self, app: str, replicas: int) -> None:
        self.control().scale_app(app, replicas)

    def replicas(self, app: str) -> list[str]:
        return self.control().replicas(app)

    def kill_replica(self, container: str) -> str:
        return self.control().kill_replica(container)

    def open_connections(self, container: str, port: int) -> int:
        return self.control().open_connections(container, port)

    def control(self) -> ComposeControl:
        """What hoptrace lab uses on a user's stack, pointed at this test project."""
        # What it learns of the containers' sockets is kept across calls (a second look is quick).
        control = ComposeControl(self.compose, self.project, env=self.environment(self.servers),
                                 listening=self._listening)
        control.settings = dict(self.settings)
        control.baseline = {}  # the environment above says how this stack runs
        return control

    def follow_logs_command(self) -> list[str]:
        """A command that prints every hop's new log lines as they are written, until stopped."""
        return [*self.compose, "--project-name", self.project, "logs", "--no-color", "--follow", "--tail", "0"]

    def stop(self) -> None:
        """Remove this test project's containers and networks (the images stay, for reuse)."""
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "10")


#: Per tier, how many times the tests read every hop's logs, and the seconds it took: the run's summary prints it
#: (tests/conftest.py), since a lab reads them after almost every request and they grow all run long.
LOG_READS: dict[str, list[float]] = {}


def tally_log_read(tier: str, began: float) -> None:
    """Count one read of ``tier``'s logs, begun at ``began`` (time.monotonic()), in LOG_READS."""
    tally = LOG_READS.setdefault(tier, [0, 0.0])
    tally[0] += 1
    tally[1] += time.monotonic() - began


def hop_log_lines(stack: NativeStack | ComposeStack) -> list[str]:
    """Every log line every hop of ``stack`` has written so far."""
    began = time.monotonic()
    if isinstance(stack, NativeStack):
        lines = [line for path in sorted(stack.workdir.glob("*.log"))
                 for line in path.read_text(errors="replace").splitlines()]
    else:
        lines = project_log_lines(stack.project)
    tally_log_read("native" if isinstance(stack, NativeStack) else "compose", began)
    return lines


def lab_target(stack: NativeStack | ComposeStack, control: bool = True) -> Target:
    """What a lab is run against on ``stack``: its nginx, every hop's log, and the stack itself to restart and
    reconfigure (``control=False``: a lab that must work, or say it cannot, without)."""
    return Target(port=stack.port, log_lines=lambda: hop_log_lines(stack), control=stack if control else None)


def app_server_log_lines(stack: NativeStack | ComposeStack) -> list[str]:
    """Every line the app servers (not nginx, not PostgreSQL) of ``stack`` have written so far, as written (no
    compose prefix)."""
    if isinstance(stack, NativeStack):
        servers = {f"{app}-{server}" for app in APPS for server in settings.SERVERS}
        return [line for path in sorted(stack.workdir.glob("*.log")) if path.stem in servers
                for line in path.read_text(errors="replace").splitlines()]
    return project_log_lines(stack.project, APP_SERVICES)


@contextmanager
def hoptrace_following(stack, *args: str) -> Iterator[Callable[[Callable[[str], bool], float], str | None]]:
    """Run ``hoptrace ARGS`` on ``stack``'s log lines as they are written; yield a function that waits for output.

    The function takes a test of a printed line and a timeout, and returns
    the first line that passes (None if none came in time). A first request
    of its own must come out the other end before the body runs, so the log
    source is reading and a request made in the body is seen; both
    processes are ended, by their own handles, on the way out.
    """
    source = subprocess.Popen(stack.follow_logs_command(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO)
    reader = subprocess.Popen([sys.executable, "-m", "wsgilab.hoptrace", *args], stdin=source.stdout,
                              stdout=subprocess.PIPE, text=True)
    source.stdout.close()  # the reader holds the pipe now
    printed: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [printed.put(line) for line in reader.stdout], daemon=True).start()

    def first(accept: Callable[[str], bool], timeout_s: float = 20.0) -> str | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = printed.get(timeout=1)
            except queue.Empty:
                continue
            if accept(line):
                return line
        return None

    try:
        # A request sent until hoptrace prints anything (for it, or for a healthcheck): the whole pipe is reading.
        deadline = time.monotonic() + 15
        time.sleep(0.3)  # long enough for tail (native) or `docker compose logs` to open the logs, most times
        while True:
            lab_http.get(stack.port, "/raw/", headers={"X-Request-ID": f"follow-ready-{uuid.uuid4().hex}"})
            if first(lambda printed: True, timeout_s=1) is not None:
                break
            if time.monotonic() > deadline:
                raise StackError(f"hoptrace {' '.join(args)} printed nothing for a request in 15 s")
        yield first
    finally:
        for process in (source, reader):
            process.terminate()
            process.wait(10)
