"""The DatabaseWrapper Django loads for ENGINE "wsgilab.container.django_postgresql": its own, the connect timed."""

from __future__ import annotations

from time import perf_counter_ns, time_ns
from typing import Any

from django.db.backends.postgresql import base

from wsgilab.container.db_trace import record_connection


class DatabaseWrapper(base.DatabaseWrapper):
    """Django's PostgreSQL connection wrapper; a new connection is a ``db_connection`` event."""

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        started_us, began = time_ns() // 1000, perf_counter_ns()
        try:
            connection = super().get_new_connection(conn_params)
        except Exception as error:  # too many clients, the database down: the trace says so
            record_connection(started_us, (perf_counter_ns() - began) // 1000, "connect", None, error)
            raise
        record_connection(started_us, (perf_counter_ns() - began) // 1000, "connect", connection.info.backend_pid)
        return connection
