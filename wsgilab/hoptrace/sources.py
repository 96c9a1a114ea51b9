"""Where hoptrace's log lines come from: files, stdin, ``docker compose logs``, ``docker logs``, Docker's API,
or a swarm stack's (its containers through Docker's API on a one-node swarm, else ``docker service logs``).

With neither files nor a pipe or file on stdin (a terminal, /dev/null as
cron and CI steps give, or nothing at all), or with ``--compose``, hoptrace
runs ``docker compose logs`` itself in the current directory's
compose project (``--follow`` for ``hoptrace follow``), with the compose tool
``wsgilab.hoptrace.compose_tool`` picks for hoptrace, the labs and the test
stacks alike. With ``--docker-api`` (hoptrace in a container, which has no
docker CLI) it asks the engine itself (``wsgilab.hoptrace.docker_api``).
With ``--stack NAME`` it reads a Docker Swarm stack's services: through
Docker's API on a one-node swarm (``stack_log_lines``), else, and to follow
them, with ``docker service logs`` (``wsgilab.hoptrace.stack_logs``).
"""

from __future__ import annotations

import argparse
import http.client
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

from wsgilab.hoptrace import docker_api as docker_api_source
from wsgilab.hoptrace.compose_tool import compose_command, describe
from wsgilab.hoptrace.docker_api import DockerApiError
from wsgilab.hoptrace.incremental_logs import IncrementalLogs
from wsgilab.hoptrace.stack_logs import stack_lines


def compose_logs(*options: str) -> Iterator[str]:
    """The lines ``docker compose logs OPTIONS`` prints, as it prints them."""
    argv = [*compose_command(), "logs", "--no-color", *options]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, errors="replace") as process:
        assert process.stdout is not None
        yield from process.stdout


def stdin_kind(stdin: TextIO) -> str | None:
    """What stdin is, in words, when it is something to read ("a pipe", "a file"); None for anything else.

    Only a pipe or a regular file holds logs. A terminal, /dev/null (which a
    script, cron or a CI step often gives) or a closed stdin hold none: read
    as input they would print "no events found" while the logs are there.
    """
    try:
        mode = os.fstat(stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return None
    return "a pipe" if stat.S_ISFIFO(mode) else "a file" if stat.S_ISREG(mode) else None


def input_lines(files: list[str], stdin: TextIO, follow: bool = False, compose: bool = False,
                verbose: bool = False, docker_api: bool = False, history: bool = False,
                stack: str | None = None) -> Iterator[str]:
    """The lines to read: the files in turn, else Docker's API or a swarm ``stack`` if asked, else stdin, else
    ``docker compose logs``.

    ``follow`` reads the logs from now on as they are written; with ``history``
    too, the lines written so far first.

    With ``verbose``, say on stderr which it is (and which compose tool, at which version).
    """
    def say(what: str) -> None:
        if verbose:
            print(f"hoptrace: reading {what}", file=sys.stderr, flush=True)

    if files:
        for name in files:
            say(name)
            with open(name, errors="replace") as handle:
                yield from handle
    elif docker_api:
        me, project = docker_api_source.own_container()
        say(f"the logs of compose project {project} through the Docker Engine API at "
            f"{docker_api_source.socket_path()}")
        yield from docker_api_source.project_lines(project, follow=follow, history=history, leave_out=(me,))
    elif stack and not follow:
        yield from stack_log_lines(stack, say)
    elif stack:
        say(f"the logs of swarm stack {stack} (`docker service logs` of each of its services)")
        yield from stack_lines(stack, follow=follow, history=history)
    elif compose or stdin_kind(stdin) is None:
        options = ("--follow",) if follow and history else ("--follow", "--tail", "0") if follow else ()
        if verbose:
            command = compose_command()
            why = "as asked (--compose)" if compose else "as stdin is no pipe or file"
            say(f"the logs of the current directory's compose project {why}, with {describe(command)} "
                f"(`{' '.join([*command, 'logs', '--no-color', *options])}`)")
        yield from compose_logs(*options)
    else:
        say(f"stdin ({stdin_kind(stdin)})")
        yield from stdin


def command_lines(args: argparse.Namespace, follow: bool = False, history: bool = False) -> Iterator[str]:
    """The lines a hoptrace command reads, by its arguments (``files``, ``--compose``, ``--verbose``)."""
    return input_lines(args.files, sys.stdin, follow=follow, compose=args.compose, verbose=args.verbose,
                       docker_api=args.docker_api, history=history, stack=args.stack)


def compose_container_ids() -> list[str]:
    """The IDs of the current compose project's containers ([] when it has none, or compose fails)."""
    done = subprocess.run([*compose_command(), "ps", "-q"], capture_output=True, text=True)
    return done.stdout.split() if done.returncode == 0 else []


#: Per compose project, its lines as read so far (wsgilab.hoptrace.incremental_logs).
_READ: dict[str, IncrementalLogs] = {}


def project_log_lines(project: str, services: tuple[str, ...] = ()) -> list[str]:
    """Every line the containers of compose project ``project`` wrote (of ``services`` only, if given).

    As written, one container after another, without compose's "name | "
    prefix. The labs read the logs after almost every request, so they are
    read once through the Engine API, and then only what is new, from each
    container's tail (wsgilab.hoptrace.incremental_logs). Where the API cannot be
    reached (DOCKER_HOST is not a unix socket), ``docker logs`` reads each
    container whole, every time. Containers that were removed take their
    logs with them, as under ``docker compose logs``.
    """
    logs = _READ.setdefault(project, IncrementalLogs(project))
    try:
        return logs.lines(services)
    except DockerApiError:
        return _docker_logs_lines(project, services)


#: Per swarm stack, its lines as read so far, or None where they are read with docker service logs (more nodes).
_STACK_READ: dict[str, IncrementalLogs | None] = {}


def stack_log_lines(stack: str, say: Callable[[str], None] = lambda what: None) -> list[str]:
    """Every line the services of swarm stack ``stack`` wrote, as hoptrace and the labs read them (the labs
    after almost every request); ``say`` is told how.

    On a one-node swarm every task's container is on this engine, so they are
    read as a compose project's are (IncrementalLogs, by the stack's labels);
    on more, or without the Engine API, ``docker service logs`` of each task,
    which reaches every node, at a second or two a read (and says so where
    there is no such stack: StackError).
    """
    try:
        if stack not in _STACK_READ:  # asked once a swarm is there (/info costs 15 times a read of the containers)
            nodes = docker_api_source.swarm_nodes()
            if nodes:
                _STACK_READ[stack] = IncrementalLogs(stack, swarm=True) if nodes == 1 else None
        logs = _STACK_READ.get(stack)
        if logs is not None:
            lines = logs.lines()
            if lines:
                say(f"the logs of swarm stack {stack} through the Docker Engine API at "
                    f"{docker_api_source.socket_path()} (a one-node swarm: every task's container is here)")
                return lines
    except (DockerApiError, OSError, http.client.HTTPException):
        pass  # the engine out of reach, or gone quiet: docker service logs says what is wrong
    say(f"the logs of swarm stack {stack} (`docker service logs` of each of its tasks)")
    return list(stack_lines(stack))


def _docker_logs_lines(project: str, services: tuple[str, ...]) -> list[str]:
    """``project_log_lines`` read with ``docker logs``, one container at a time."""
    listed = subprocess.run(["docker", "ps", "--all", "--no-trunc", "--filter",
                             f"label=com.docker.compose.project={project}",
                             "--format", '{{.ID}} {{.Label "com.docker.compose.service"}}'],
                            capture_output=True, text=True)
    lines: list[str] = []
    for row in listed.stdout.splitlines():
        container, _, service = row.partition(" ")
        if services and service not in services:
            continue
        done = subprocess.run(["docker", "logs", container], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        lines += done.stdout.decode("utf-8", "replace").splitlines()
    return lines


def compose_project_name() -> str | None:
    """The name of the current directory's compose project, read off its containers (None if it has none)."""
    ids = compose_container_ids()
    if not ids:
        return None
    done = subprocess.run(["docker", "inspect", "--format", '{{index .Config.Labels "com.docker.compose.project"}}',
                           ids[0]], capture_output=True, text=True)
    return done.stdout.strip() or None
