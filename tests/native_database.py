"""The native tier's PostgreSQL: docker-compose.yml's db service, run as a process beside the app servers.

It comes from Debian's ``postgresql`` package (scripts/test installs it:
the binaries in /usr/lib/postgresql/N/bin; bookworm's is 15, the image's
17), listens on 127.0.0.1 at a free port and on a Unix socket in the
stack's work directory, and keeps its data there. It is set up as the db
service sets itself up:

- the server's settings are the db service's ``command`` in
  docker-compose.yml, read from there (with its ``${NAME:-default}``
  filled in), so the two tiers cannot drift apart;
- the apps' password is written as db-secrets writes it
  (wsgilab.container.db_secrets.write_once), and only its file's path
  reaches the apps (WSGILAB_DB_PASSWORD_FILE);
- the apps' role is made by the very script the db service runs on its
  first start (db/initdb.d), through psql.

The superuser (``postgres``) has no password and is trusted on the Unix
socket only, whose directory only the server's user may enter; the apps
connect over TCP with their role's password, as in compose. PostgreSQL
will not run as root: where the tests run as root, it runs as the
package's ``postgres`` user.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from wsgilab.container.db_secrets import write_once
from wsgilab.labs.database_control import SESSIONS_SQL, Session, sessions_from

REPO = Path(__file__).resolve().parent.parent
#: The database's name and the apps' role, as docker-compose.yml names them.
NAME = USER = "wsgilab"
#: The settings that reach the database itself (docker-compose.yml's db command); changing one restarts it.
SERVER_SETTINGS = ("WSGILAB_DB_MAX_CONNECTIONS", "WSGILAB_DB_LOG_MIN_MS")
#: Seconds PostgreSQL gets to stop (SIGINT: its fast shutdown) before SIGKILL: docker compose's default grace.
STOP_GRACE_S = 10
#: How long a start may take before it is called failed.
START_TIMEOUT_S = 60


class DatabaseError(RuntimeError):
    """The native PostgreSQL could not be set up, started or read; the message says why, with its log."""


def binaries() -> Path:
    """The newest PostgreSQL binaries Debian's packages installed; DatabaseError naming the package if none."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise DatabaseError("PostgreSQL is not installed; the native tier needs it (apt-get install postgresql, "
                            "or scripts/test, which installs it)")
    return found[-1].parent


def compose_server_arguments(settings: Mapping[str, str],
                             compose_file: Path = REPO / "docker-compose.yml") -> list[str]:
    """The db service's ``command`` after ``postgres``, each ``${NAME:-default}`` filled from ``settings``."""
    block = re.search(r"^  db:\n(?:    .*\n|\n)*?    command:\n((?:      - .*\n)+)", compose_file.read_text(), re.M)
    if block is None:
        raise DatabaseError(f"{compose_file} has no db service with a command list")
    words = [re.fullmatch(r'      - "?(.*?)"?', line)[1] for line in block[1].splitlines()]
    if words[:1] != ["postgres"]:
        raise DatabaseError(f"the db service's command starts {words[:1]}, not postgres")
    fill = lambda m: settings.get(m[1]) or m[2]  # noqa: E731 - compose's own rule: unset or empty takes the default
    return [re.sub(r"\$\{(\w+):-([^}]*)\}", fill, word) for word in words[1:]]


class NativeDatabase:
    """One PostgreSQL server in ``workdir``, on 127.0.0.1:``port``."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.bin = binaries()
        self.port = port
        self.data = workdir / "db-data"
        self.sockets = workdir / "db-socket"
        self.password_file = workdir / "db-secret" / "password"
        #: Its stderr: hop_log_lines reads every *.log of the stack, so PostgreSQL's lines join the traces.
        self.log = workdir / "db.log"
        #: What a lab changed of SERVER_SETTINGS.
        self.settings: dict[str, str] = {}
        self.process: subprocess.Popen | None = None
        self.user = "postgres" if os.geteuid() == 0 else None

    def app_environment(self) -> dict[str, str]:
        """What an app is given to reach it: what docker-compose.yml gives the apps, the host and port aside."""
        return {"WSGILAB_DB_HOST": "127.0.0.1", "WSGILAB_DB_PORT": str(self.port), "WSGILAB_DB_NAME": NAME,
                "WSGILAB_DB_USER": USER, "WSGILAB_DB_PASSWORD_FILE": str(self.password_file)}

    def create(self) -> None:
        """A new cluster, started, with the apps' database and role in it."""
        for folder in (self.data, self.sockets):
            folder.mkdir(mode=0o700)
            if self.user:
                shutil.chown(folder, self.user, self.user)
        # Read by the apps and by db/initdb.d's script, which run as the tests' user; never by the server.
        self.password_file.parent.mkdir(mode=0o700)
        write_once(str(self.password_file), secrets.token_urlsafe(32), 0o600)
        self._run([str(self.bin / "initdb"), "--pgdata", str(self.data), "--username", "postgres", "--encoding",
                   "UTF8", "--locale", "C.UTF-8", "--auth-local", "trust", "--auth-host", "scram-sha-256",
                   "--no-sync"], as_owner=True)
        self.start()
        self.psql("--command", f"CREATE DATABASE {NAME}")
        for script in sorted((REPO / "db" / "initdb.d").glob("*.sh")):
            env = {**os.environ, **self._client_env(), "POSTGRES_USER": "postgres", "POSTGRES_DB": NAME,
                   "WSGILAB_DB_USER": USER, "WSGILAB_DB_PASSWORD_FILE": str(self.password_file)}
            self._run(["bash", str(script)], env=env)

    def start(self) -> None:
        """Start the server on the db service's settings (and the lab's), and wait until it takes connections."""
        argv = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.sockets}",
                *compose_server_arguments(self.settings)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(argv, user=self.user, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.data.parent)
        # The db service's healthcheck, until it passes: ready for connections over TCP.
        ready = [str(self.bin / "pg_isready"), "--host", "127.0.0.1", "--port", str(self.port), "--quiet"]
        deadline = time.monotonic() + START_TIMEOUT_S
        while subprocess.run(ready, stdin=subprocess.DEVNULL, timeout=30).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise DatabaseError(f"PostgreSQL did not start:\n{self._tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server as docker compose stops the db service: SIGINT, SIGKILL after the grace period."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, settings: Mapping[str, str] | None = None) -> None:
        """Stop, then start again (on ``settings``, where given, of SERVER_SETTINGS)."""
        self.stop()
        if settings is not None:
            self.settings = {k: v for k, v in settings.items() if k in SERVER_SETTINGS}
        self.start()

    def sessions(self) -> list[Session]:
        """PostgreSQL's client sessions now (pg_stat_activity), psql's own left out."""
        return sessions_from(self.psql("--tuples-only", "--no-align", "--command", SESSIONS_SQL))

    def psql(self, *args: str) -> str:
        """psql as the superuser, over the Unix socket; its output."""
        return self._run([str(self.bin / "psql"), "--no-psqlrc", "--username", "postgres", "--dbname", "postgres",
                          "-v", "ON_ERROR_STOP=1", *args], env={**os.environ, **self._client_env()})

    def _client_env(self) -> dict[str, str]:
        return {"PGHOST": str(self.sockets), "PGPORT": str(self.port)}

    def _run(self, argv: list[str], env: Mapping[str, str] | None = None, as_owner: bool = False) -> str:
        done = subprocess.run(argv, env=env, user=self.user if as_owner else None, cwd=self.data.parent,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise DatabaseError(f"{Path(argv[0]).name} failed ({done.returncode}): "
                                f"{(done.stderr or done.stdout).strip()[-2000:]}")
        return done.stdout

    def _tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
