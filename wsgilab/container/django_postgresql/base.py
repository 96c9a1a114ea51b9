"""The DatabaseWrapper Django loads for ENGINE "wsgilab.container.django_postgresql": its own, the connect,
the commit and the rollback timed."""

from __future__ import annotations

from time import perf_counter_ns, time_ns

from django.db.backends.postgresql import base

from wsgilab.container.db_trace import record_connection, timed_transaction_end


class DatabaseWrapper(base.DatabaseWrapper):
    """Django's PostgreSQL connection wrapper; a new connection is a ``db_connection`` event, a commit or a
    rollback a ``db_query``."""

    def connect(self) -> None:
        """Django's connect: the new connection (or one from its pool) and its setup (time zone, role), as one
        ``db_connection`` event, or the error that ended either (too many clients, the database down or
        restarting)."""
        started_us, began = time_ns() // 1000, perf_counter_ns()
        how = "pool" if self.settings_dict["OPTIONS"].get("pool") else "connect"  # DJANGO_DB_CONNECTIONS=pool
        try:
            super().connect()
        except Exception as error:
            record_connection(started_us, (perf_counter_ns() - began) // 1000, how, None, error)
            raise
        record_connection(started_us, (perf_counter_ns() - began) // 1000, how, self.connection.info.backend_pid)

    def _commit(self) -> None:
        """Django's commit, as a COMMIT query in the trace (a commit the database refuses is then in it)."""
        if self.connection is None:
            return super()._commit()
        return timed_transaction_end("COMMIT", self.connection, super()._commit)

    def _rollback(self) -> None:
        """Django's rollback, as a ROLLBACK query in the trace."""
        if self.connection is None:
            return super()._rollback()
        return timed_transaction_end("ROLLBACK", self.connection, super()._rollback)
