"""The database's hop in a request's trace: every query, and the wait for a connection.

Each app hooks it in its own framework's way, at the last step before the
driver sends a statement:

- the raw app and Flask (SQLAlchemy) connect through psycopg with
  ``cursor_factory=TracedCursor``: psycopg's own cursor, timed;
- Django wraps each query with ``connection.execute_wrapper(django_wrapper)``
  (its documented hook), around the same psycopg call; and its database
  backend is Django's own with the connect timed
  (wsgilab.container.django_postgresql), since Django opens a connection per
  request by default.

A query becomes a ``db_query`` event at the moment it was sent, with its
duration, rows, the PostgreSQL backend's pid that ran it, and its statement
with every literal taken out (``sql_text.sanitized``): the text a trace may keep,
since the values a user typed never reach a log line. Getting a connection
becomes a ``db_connection`` event (``timed_connection``): the wait for a
pooled one, or the time to open one.

Each statement a traced request sends begins with a comment that names its
query's span, ``/*traceparent='00-<trace>-<span>-01'*/`` (the W3C header's
value, as sqlcommenter writes it; the span id is the one the export gives the
query, wsgilab.trace_context.query_span_id), so PostgreSQL's own log line for
it joins the request (wsgilab.hoptrace.postgres_log). It goes first, not
last, because the first line of a statement is what the log's line carries.
A statement carrying a different comment each time is never the same text
twice, so psycopg never prepares it: a traced request pays a parse per query.

A trace line must stay one write of at most 4 KiB, which a pipe keeps whole
beside other workers' writes (wsgilab.container.trace_writer), so a
statement's text is written the first time it runs in a request; a repeat
of it names that query instead (``same_as``), in about 100 bytes; and past
``MAX_QUERY_EVENTS`` queries, or ``MAX_QUERY_BYTES`` of them, queries are only
counted: every request's record still carries ``db_queries`` and ``db_us``,
all of them.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from time import perf_counter_ns, time_ns
from typing import Any

from wsgilab.container.sql_text import operation, sanitized
from wsgilab.container.wsgi_trace import RequestTrace, current_trace
from wsgilab.trace_context import format_traceparent, query_span_id

#: Query events written per request, and the bytes they may take of its line; the rest are counted
#: (db_queries, db_us), not listed. 2 400 bytes hold two statements and sixteen repeats of one.
MAX_QUERY_EVENTS, MAX_QUERY_BYTES = 25, 2400
#: Whether statements carry their traceparent comment: not where PostgreSQL logs none (WSGILAB_DB_LOG_MIN_MS=-1),
#: since nothing would join it, and a statement whose text is new each time misses psycopg's placeholder cache
#: and is never prepared (docs/performance-tracing.md).
COMMENTS = os.environ.get("WSGILAB_DB_LOG_MIN_MS", "").strip() != "-1"


def commented(statement: str, trace: RequestTrace | None = None) -> str:
    """``statement`` with the traceparent comment of the query it will be in the current request; as it is
    when no request is traced (a migration at start), or no comment is wanted (``COMMENTS``)."""
    trace = trace or current_trace()
    if trace is None or not COMMENTS:
        return statement
    span_id = query_span_id(trace.span_id, trace.db_queries + 1)
    return f"/*traceparent='{format_traceparent(trace.trace_id, span_id)}'*/ {statement}"


def driver_error_name(error: BaseException) -> str:
    """The name of the driver's own exception: Django raises its ``OperationalError`` *from* psycopg's
    (``QueryCanceled``, ``AdminShutdown``), which says more."""
    cause = error.__cause__
    return type(cause if cause is not None and type(error).__module__ == "django.db.utils" else error).__name__


def record_query(statement: str, started_us: int, duration_us: int, rows: int | None, backend_pid: int | None,
                 error: BaseException | None = None, trace: RequestTrace | None = None,
                 target: Callable[[], tuple[str, int, str]] | None = None) -> None:
    """Add a query that began at ``started_us`` and took ``duration_us`` to the current request's trace.

    ``target()``: the database's (host, port, name), asked once per request.
    """
    trace = trace or current_trace()
    if trace is None:
        return
    if not trace.db_target and target is not None:
        host, port, name = target()
        trace.db_target = (f',"db_address":{json.dumps(str(host))},"db_port":{int(port)},'
                           f'"db_namespace":{json.dumps(str(name))}')
    trace.db_queries += 1
    trace.db_us += duration_us
    if trace.db_queries > MAX_QUERY_EVENTS or trace.db_bytes >= MAX_QUERY_BYTES:
        return
    text = sanitized(statement)
    first = trace.db_statements.setdefault(text, trace.db_queries)
    if first == trace.db_queries:
        fields: dict[str, Any] = {"n": first, "statement": text, "operation": operation(statement)}
    else:
        fields = {"n": trace.db_queries, "same_as": first}  # its statement and operation are query first's
    fields.update(duration_us=duration_us, rows=rows, backend_pid=backend_pid)
    if error is not None:
        fields["error"] = driver_error_name(error)
    trace.event_at("db_query", started_us, hop="db", **fields)
    trace.db_bytes += len(trace.parts[-1]) + 1  # and its comma


@contextlib.contextmanager
def timed_query(statement: str, backend_pid: int | None, rows: Callable[[], int | None],
                target: Callable[[], tuple[str, int, str]] | None = None) -> Iterator[None]:
    """Time the block that runs ``statement`` and record it; ``rows()`` is asked after it ran."""
    started_us, began = time_ns() // 1000, perf_counter_ns()
    try:
        yield
    except BaseException as error:
        record_query(statement, started_us, (perf_counter_ns() - began) // 1000, None, backend_pid, error,
                     target=target)
        raise
    record_query(statement, started_us, (perf_counter_ns() - began) // 1000, rows(), backend_pid, target=target)


def _statement_text(query: Any, connection: Any) -> str:
    """A psycopg query (str, bytes, or a psycopg.sql object) as text."""
    if isinstance(query, str):
        return query
    if isinstance(query, bytes):
        return query.decode("utf-8", "replace")
    as_string = getattr(query, "as_string", None)
    return as_string(connection) if as_string else str(query)


try:
    import psycopg
except ImportError:  # the native tier's venv may lack it; only the database endpoints need it
    psycopg = None


def target_of(connection: Any) -> tuple[str, int, str]:
    """A psycopg connection's database: (host, port, name)."""
    info = connection.info
    return info.host, info.port, info.dbname


def timed_transaction_end(statement: str, connection: Any, end: Callable[[], Any]) -> Any:
    """Run ``end()`` (a psycopg connection's commit or rollback), recorded as the ``statement`` it sends
    ("COMMIT", "ROLLBACK") when a transaction is open: a commit the database refuses (a restart cut the
    connection) is then in the trace, not only in the answer."""
    idle = psycopg is not None and connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    if current_trace() is None or idle:
        return end()  # no request to trace, or nothing to send
    with timed_query(statement, connection.info.backend_pid, lambda: None, lambda: target_of(connection)):
        return end()


if psycopg is not None:
    class TracedCursor(psycopg.Cursor):
        """psycopg's cursor, with each execute() recorded in the request's trace (``cursor_factory=``)."""

        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            if current_trace() is None:  # no request traced (not sampled, or at start): psycopg's own
                return super().execute(query, params, **kwargs)
            text = _statement_text(query, self.connection)
            with timed_query(text, self.connection.info.backend_pid, self._rows, self._target):
                return super().execute(commented(text), params, **kwargs)

        def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> Any:
            if current_trace() is None:
                return super().executemany(query, params_seq, **kwargs)
            text = _statement_text(query, self.connection)
            with timed_query(text, self.connection.info.backend_pid, self._rows, self._target):
                return super().executemany(commented(text), params_seq, **kwargs)

        def _rows(self) -> int | None:
            return self.rowcount if self.rowcount >= 0 else None

        def _target(self) -> tuple[str, int, str]:
            return target_of(self.connection)

    class TracedConnection(psycopg.Connection):
        """psycopg's connection, with commit() and rollback() recorded as the statements they send
        (``connection_class=`` for psycopg_pool; SQLAlchemy's ``do_connect`` event for Flask)."""

        def commit(self) -> None:
            timed_transaction_end("COMMIT", self, super().commit)

        def rollback(self) -> None:
            timed_transaction_end("ROLLBACK", self, super().rollback)


def django_wrapper(execute: Callable, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    """Django's execute_wrapper: records each query its ORM sends (``with connection.execute_wrapper(...)``)."""
    if current_trace() is None:
        return execute(sql, params, many, context)
    cursor, wrapper = context["cursor"], context["connection"]
    raw = getattr(wrapper, "connection", None)
    backend_pid = raw.info.backend_pid if raw is not None and hasattr(raw, "info") else None
    settings = wrapper.settings_dict

    def target() -> tuple[str, int, str]:
        return settings.get("HOST") or "localhost", int(settings.get("PORT") or 5432), settings.get("NAME") or ""

    with timed_query(sql, backend_pid, lambda: cursor.rowcount if cursor.rowcount >= 0 else None, target):
        return execute(commented(sql), params, many, context)


def record_connection(started_us: int, wait_us: int, how: str, backend_pid: int | None,
                      error: BaseException | None = None) -> None:
    """Add getting a database connection (``how``: "pool" or "connect"), or failing to, to the request's trace."""
    trace = current_trace()
    if trace is None:
        return
    if error is None:
        trace.event_at("db_connection", started_us, hop="db", how=how, wait_us=wait_us, backend_pid=backend_pid)
    else:
        trace.event_at("db_connection", started_us, hop="db", how=how, wait_us=wait_us, backend_pid=None,
                       error=driver_error_name(error))


@contextlib.contextmanager
def timed_connection(get: Callable[[], Any], how: str, backend_pid: Callable[[Any], int | None]) -> Iterator[Any]:
    """Get a connection with ``get()`` (a pool's or a driver's), and record how long that took, or that it failed.

    ``how``: "pool" (waited for one of a pool's connections) or "connect" (opened a new one).
    """
    if current_trace() is None:  # nothing to record it in
        with get() as connection:
            yield connection
        return
    started_us, began = time_ns() // 1000, perf_counter_ns()
    with contextlib.ExitStack() as stack:
        try:
            connection = stack.enter_context(get())
        except Exception as error:
            record_connection(started_us, (perf_counter_ns() - began) // 1000, how, None, error)
            raise
        record_connection(started_us, (perf_counter_ns() - began) // 1000, how, backend_pid(connection))
        yield connection
