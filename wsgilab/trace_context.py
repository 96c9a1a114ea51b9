"""W3C Trace Context: the ``traceparent`` header, read and written the one way this stack does.

A ``traceparent`` is ``00-<trace-id>-<parent-id>-<flags>``: 32 and 16
lowercase hex digits and 2 of flags (https://www.w3.org/TR/trace-context/).
nginx checks a caller's header with the same rule (the ``map``s in
nginx/nginx.conf) and sends its own on; HopTrace checks it again here, like
the request id, because an app server can be reached around nginx.

Span ids come from a generator of this module's, seeded from ``os.urandom``
once per process, as OpenTelemetry's Python SDK makes its ids
(``random.getrandbits``): reading the OS's random source for every request
cost more than the rest of the ids' work. It is reseeded whenever the pid
changes, since uWSGI forks its workers in C, where Python's own reseed after
``os.fork`` never runs: every worker would otherwise hand out the same ids.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from typing import NamedTuple

#: Version 00 exactly as the spec writes it: lowercase hex only.
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
#: A trace id, span id or request id that is a trace id (nginx's $request_id is one).
TRACE_ID = re.compile(r"[0-9a-f]{32}")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


class TraceParent(NamedTuple):
    """A well-formed traceparent: the trace it names, the caller's span, its flags."""

    trace_id: str
    parent_id: str
    flags: str


def parse_traceparent(value: str | None) -> TraceParent | None:
    """The parts of ``value`` if it is a well-formed version-00 traceparent, else None.

    Not well formed: another version, upper case, a wrong length, extra text
    (two headers joined with ", "), an all-zero trace id or parent id.
    """
    parts = _checked_parts(value)
    return None if parts is None else TraceParent(*parts)


def _checked_parts(value: str | None) -> tuple[str, str, str] | None:
    """(trace id, parent id, flags) of a well-formed traceparent, else None: the check, once, for both callers."""
    if not value:
        return None
    match = TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    parts = match.groups()
    return None if parts[0] == _ZERO_TRACE or parts[1] == _ZERO_SPAN else parts


def trace_of(traceparent: str | None, request_id: str) -> tuple[str, str]:
    """(trace id, parent span id) for a request that came with ``traceparent`` (as the app side sees it).

    A well-formed one is continued. Without one (the request came around
    nginx) a trace starts here, named by the request id if that is a trace
    id, and has no parent ("").
    """
    # Every traced request comes here: the tuple, not a TraceParent, is all it needs.
    caller = _checked_parts(traceparent)
    if caller is not None:
        return caller[0], caller[1]
    return (request_id if TRACE_ID.fullmatch(request_id) else new_trace_id()), ""


def is_sampled(traceparent: str | None) -> bool:
    """Whether the request's app side records it: False only for a well-formed traceparent whose sampled flag is 0.

    nginx decides for a trace that starts there (``WSGILAB_TRACE_SAMPLE``) and
    passes a caller's decision on, as W3C's sampled flag (the lowest bit of
    the flags). A request without a well-formed traceparent came around nginx:
    its trace starts in the app, which records it.
    """
    parts = _checked_parts(traceparent)
    return parts is None or flags_sampled(parts[2])


def flags_sampled(flags: object) -> bool:
    """Whether W3C trace flags ("01", "00": a traceparent's, or nginx's ``trace_flags``) say sampled; anything
    else (a log line older than sampling, a malformed value) counts as sampled."""
    return type(flags) is not str or flags not in _UNSAMPLED_FLAGS


def flags_byte(flags: object) -> int:
    """W3C trace flags ("01", "00") as the number OTLP's ``Span.flags`` holds in its lowest 8 bits; a log line
    older than sampling, or a malformed value, as 1 (sampled), as ``flags_sampled`` reads it."""
    return int(flags, 16) if type(flags) is str and flags in _TWO_HEX_DIGITS else 1


#: Every well-formed flags value, as a traceparent writes it.
_TWO_HEX_DIGITS = frozenset(f"{value:02x}" for value in range(256))
#: Every two-digit flags value whose sampled bit (the lowest) is 0.
_UNSAMPLED_FLAGS = frozenset(f"{value:02x}" for value in range(0, 256, 2))


class ServerSpan(NamedTuple):
    """The ids a server's own line takes for a request the app side does not record (not sampled)."""

    request_id: str
    trace_id: str
    server_parent_id: str
    server_span_id: str


def server_span_only(traceparent: str | None, request_id: str) -> ServerSpan:
    """The server's worker span for a request that is not sampled: its place in the trace, a fresh id."""
    trace_id, parent_id = trace_of(traceparent, request_id)
    return ServerSpan(request_id, trace_id, parent_id, new_span_ids()[0])


def span_fields(trace_id: str, span_id: str, parent_id: str) -> str:
    """A span's ids as JSON fields to paste into a record: ``,"trace_id":..,"span_id":..,"parent_span_id":..``.

    Every id is hex (checked or made here), so nothing needs escaping.
    """
    return f',"trace_id":"{trace_id}","span_id":"{span_id}","parent_span_id":"{parent_id}"'


def format_traceparent(trace_id: str, span_id: str, flags: str = "01") -> str:
    """A traceparent naming ``span_id`` of ``trace_id`` as the parent."""
    return f"00-{trace_id}-{span_id}-{flags}"


#: Where span ids come from, and the process it was seeded in (see the module's docstring).
_ids = random.Random()
_ids_seeded_in = 0


def new_span_ids(pid: int = 0) -> tuple[str, str]:
    """Two fresh random span ids (16 hex digits each), from one draw of 128 bits.

    ``pid`` is this process's id where the caller has read it already (HopTrace, once per request).
    """
    global _ids_seeded_in
    pid = pid or os.getpid()
    if pid != _ids_seeded_in:
        _ids.seed(os.urandom(32))
        _ids_seeded_in = pid
    value = _ids.getrandbits(128).to_bytes(16, "big").hex()  # half the time of f"{...:032x}"
    return value[:16], value[16:]


def new_trace_id() -> str:
    """A fresh random trace id (32 hex digits)."""
    return os.urandom(16).hex()


def derived_id(span_id: str, kind: str) -> str:
    """The id of the ``kind`` span inside the span ``span_id``: 8 bytes of a hash of the two.

    The spans a record holds without writing their ids (the queue, the
    framework, the view, each query) get theirs so, from the record's span:
    the same on the host, which exports them, and in the app, whose queries
    carry theirs to PostgreSQL (``query_span_id``).
    """
    return hashlib.blake2b(f"{span_id}/{kind}".encode(), digest_size=8).hexdigest()


def query_span_id(span_id: str, n: int) -> str:
    """The span id of the ``n``-th query (from 1) of the request whose WSGI span is ``span_id``."""
    return derived_id(span_id, f"db{n}")
