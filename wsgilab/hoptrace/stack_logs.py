"""The log lines of a Docker Swarm stack (``hoptrace --stack wsgilab ...``), through ``docker service logs``.

``docker service logs`` gathers a service's lines from every node its tasks
ran on, including tasks that have since ended (a rolling update's old
replicas, as long as Swarm keeps their containers: its task history), so a
trace still finds the replica that served it. ``--raw`` leaves out the
"service.slot.task@node |" prefix: the hops' records name their replica
themselves. The hops write to stdout and stderr both, and the logs command
passes each on as it came, so both are read.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from collections.abc import Iterator


class StackError(RuntimeError):
    """The stack cannot be read (no such stack, no swarm); the message says what to do."""


def stack_services(stack: str) -> list[str]:
    """The services of ``stack``, by name ("wsgilab_flask", ...); StackError when it has none."""
    done = subprocess.run(["docker", "stack", "services", "--format", "{{.Name}}", stack],
                          capture_output=True, text=True)
    names = done.stdout.split()
    if done.returncode != 0 or not names:
        said = (done.stderr or "").strip() or "no services"
        raise StackError(f"no stack {stack!r} to read ({said}); is it up (scripts/swarm up)?")
    return sorted(names)


def _logs_argv(service: str, follow: bool, history: bool) -> list[str]:
    options = ["--follow", *([] if history else ["--tail", "0"])] if follow else []
    return ["docker", "service", "logs", "--raw", "--no-trunc", *options, service]


#: Seconds one task's logs may take to read; past it, what came is kept and the rest said to be missing.
TASK_LOGS_S = 60


def _tasks(service: str) -> list[str]:
    """The ids of ``service``'s tasks, running and ended (as many as Swarm's task history keeps)."""
    done = subprocess.run(["docker", "service", "ps", "--quiet", "--no-trunc", service], capture_output=True,
                          text=True)
    return done.stdout.split()


def _task_lines(task: str) -> list[str]:
    argv = ["docker", "service", "logs", "--raw", "--no-trunc", task]
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TASK_LOGS_S)
        out = done.stdout
    except subprocess.TimeoutExpired as stopped:
        out = stopped.stdout or b""
        print(f"hoptrace: `{' '.join(argv)}` did not end within {TASK_LOGS_S} s; read what it gave",
              file=sys.stderr, flush=True)
    return out.decode("utf-8", "replace").splitlines(keepends=True)


def stack_lines(stack: str, follow: bool = False, history: bool = False) -> Iterator[str]:
    """Every line the services of ``stack`` wrote; with ``follow``, from now on as they come (``history``:
    the earlier ones first).

    Without ``follow``, one task after another, the ended ones too
    (hoptrace groups records by request id, so the order does not matter):
    a whole service's logs, on Docker 28, did not end once the service had
    been updated, while each task's did. With ``follow``, one reader per
    service (its new tasks too), their lines merged as they arrive.
    """
    services = stack_services(stack)
    if not follow:
        for service in services:
            for task in _tasks(service):
                yield from _task_lines(task)
        return
    merged: queue.Queue[str | None] = queue.Queue()
    processes = [subprocess.Popen(_logs_argv(service, True, history), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, errors="replace") for service in services]

    def read(process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            merged.put(line)
        merged.put(None)

    for process in processes:
        threading.Thread(target=read, args=(process,), daemon=True).start()
    try:
        ended = 0
        while ended < len(processes):
            line = merged.get()
            if line is None:
                ended += 1
            else:
                yield line
    finally:
        for process in processes:
            process.terminate()
            process.wait()
