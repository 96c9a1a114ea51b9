"""BatchedLineWriter: a worker's trace lines leave in a few write() calls, not one per request.

    from wsgilab.container.trace_writer import BatchedLineWriter
    write_line = BatchedLineWriter(fd=1, max_delay_s=0.05)
    write_line('{"request_id": ...}\\n')

A write() to the container's stdout is a system call and a wake-up of
Docker's log reader: on the raw app it was the largest single piece of what
tracing cost a request (docs/performance-tracing.md). So a worker's request thread
only hands its finished line over (an append under a lock); a thread of the
worker's own writes what has gathered ``max_delay_s`` after the first line
of it, in write() calls of at most 4 KiB of whole lines, back to back. The
request thread writes only if the thread falls behind by ``MAX_HELD``
bytes (it cannot get the GIL: a request computing in C that never lets it
go). Busy, a worker writes a few times per ``max_delay_s``; idle, a line
is written ``max_delay_s`` after its request ended.

Nothing is lost when a worker ends the way servers end them: at a normal
exit, a reload, a graceful stop, gunicorn's SIGABRT for a worker past its
timeout and uWSGI's ``max-requests`` recycling, Python's ``atexit`` writes
what is pending. **SIGKILL** (uWSGI's harakiri, the kernel's OOM killer, or
``docker kill``) gives a process no last word: the lines of requests it
finished in the last ``max_delay_s`` and had not written are lost with it.
A request cut off by the kill has no trace line either way; its nginx line
(502) says what happened.

Why 4 KiB: every worker of a container writes into the same pipe, and Linux
keeps a write of at most ``PIPE_BUF`` (4096) bytes whole; a larger one may
interleave with another worker's. A single line longer than that goes out
alone, at once.

Why a thread and not a timer signal: uWSGI's workers wait for the next
request in C, where no Python signal handler runs until a request comes.
The thread's CPU is the worker's all the same, and there is still one
write() per 4 KiB; what moves off the request is the system call's time (and
its disturbance of a large app's CPU caches), and back-to-back writes mostly
share one wake-up of the log reader. Measured in docs/performance-tracing.md.
``max_delay_s=0`` writes each line at once, with no thread
(``WSGILAB_TRACE_FLUSH_MS=0``).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

#: The most bytes one write() to a pipe keeps whole beside other writers' (Linux's PIPE_BUF).
PIPE_BUF = 4096
#: How many bytes of lines a worker holds before its request thread writes them itself (the pipe's default size).
MAX_HELD = 64 * 1024

#: Taken only while a process adopts the writer (its first line after a fork), never around a write.
_ADOPTING = threading.Lock()


class BatchedLineWriter:
    """Called with each finished line (str, ASCII, newline-terminated); writes them to ``fd`` in batches."""

    def __init__(self, fd: int, max_delay_s: float) -> None:
        self.fd, self.max_delay_s = fd, max_delay_s
        #: The process this writer's locks, pending lines and thread belong to (0: none yet).
        self._pid = 0
        #: Guards the pending lines; held for an append or a swap, never around a write().
        self._lock = threading.Lock()
        #: Held around the write() calls, so batches leave in the order they were taken.
        self._writing = threading.Lock()
        self._pending: list[str] = []
        self._size = 0
        #: Whether the writer thread has been woken for what is pending (set once per batch, not per line).
        self._armed = False
        self._wake = threading.Event()
        atexit.register(self.flush)

    def __call__(self, line: str) -> None:
        # A line of any other text is counted in characters, not bytes: it goes alone (isascii is a flag check).
        if self.max_delay_s <= 0 or len(line) > PIPE_BUF or not line.isascii():
            self.flush()
            _write_all(self.fd, line.encode())
            return
        if self._pid != os.getpid():
            self._adopt()
        with self._lock:
            self._pending.append(line)
            self._size += len(line)
            backlog = self._size > MAX_HELD
            wake = not self._armed
            self._armed = True
        if backlog:  # the thread is not keeping up (or cannot run): this thread writes
            self.flush()
        elif wake:
            self._wake.set()

    def flush(self) -> None:
        """Write what is pending now (at exit; before a line that must go at once)."""
        if self._pid != os.getpid():
            return  # nothing pending here: the lines in memory are another process's, which writes its own
        with self._writing:
            with self._lock:
                pending, self._pending, self._size = self._pending, [], 0
            _write_lines(self.fd, pending)

    def _adopt(self) -> None:
        """Make the writer this process's: fresh locks and batch, and a thread that writes it.

        A worker is a fork of the master, which made the writer: servers fork
        from C as well as from Python, so this is checked by pid on each line
        rather than with ``os.register_at_fork``. A parent's pending lines in
        the copy are dropped here: the parent writes them itself.
        """
        with _ADOPTING:
            pid = os.getpid()
            if self._pid == pid:
                return
            self._lock, self._writing, self._pending, self._size = threading.Lock(), threading.Lock(), [], 0
            self._wake, self._armed = threading.Event(), False
            threading.Thread(target=self._write_soon, args=(self._wake,), name="wsgilab-trace-writer",
                             daemon=True).start()
            self._pid = pid

    def _write_soon(self, wake: threading.Event) -> None:
        """The writer thread: ``max_delay_s`` after it is woken, write what is pending."""
        while True:
            wake.wait()
            time.sleep(self.max_delay_s)
            with self._lock:
                wake.clear()
                self._armed = False
            try:
                self.flush()
            except OSError as error:  # the log reader is gone; say so once per batch, where a person may see it
                print(f"wsgilab: trace lines not written: {error}", file=sys.stderr)


def _write_lines(fd: int, lines: list[str]) -> None:
    """Write ``lines`` in as few write() calls as keep each whole lines of at most PIPE_BUF bytes."""
    batch: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) > PIPE_BUF and batch:
            _write_all(fd, "".join(batch).encode())
            batch, size = [], 0
        batch.append(line)
        size += len(line)
    if batch:
        _write_all(fd, "".join(batch).encode())


def _write_all(fd: int, data: bytes) -> None:
    """os.write until all of ``data`` is out (a pipe takes at most PIPE_BUF whole; a signal may cut a write short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def written_at_once(out: IO[str]) -> Callable[[str], None]:
    """Each line written to ``out`` and flushed: one write per line (HopTrace's default, and tests')."""
    def write_line(line: str) -> None:
        out.write(line)
        out.flush()
    return write_line
