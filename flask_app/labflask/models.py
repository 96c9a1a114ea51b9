"""The Flask app's tables, declared with SQLAlchemy 2's ORM, and the engine each worker process makes.

``engine()`` is made per process on first use, after the server has forked:
an engine made before the fork would hand the workers its pooled connections
to share (SQLAlchemy's docs: "Using Connection Pools with Multiprocessing";
the ``connection-before-fork`` lab makes it so, with
WSGILAB_DB_CONNECT_AT_IMPORT=on). Its pool holds up to ``WSGI_THREADS``
connections, one per thread that can run a request at once; a request that
finds them all busy waits up to POOL_TIMEOUT_S.

SQLAlchemy's psycopg dialect connects with psycopg 3, given
``cursor_factory=TracedCursor``: each statement it sends is a ``db_query`` in
the request's trace, as the raw app's are.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, String, create_engine, event, func
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from wsgilab.container import database

#: How long a request waits for one of its worker's pooled connections before it is a 503.
POOL_TIMEOUT_S = 5.0


class Base(DeclarativeBase):
    pass


class Owner(Base):
    __tablename__ = "flask_owner"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)


class Item(Base):
    __tablename__ = "flask_item"
    __table_args__ = (CheckConstraint(f"char_length(name) BETWEEN 1 AND {database.MAX_NAME}"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String)
    owner_id: Mapped[int] = mapped_column(ForeignKey("flask_owner.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Loaded when first touched, with a query of its own (SQLAlchemy's default, "select"): /items asks for it
    # up front instead (selectinload), /items?n_plus_one=1 touches it in a loop.
    owner: Mapped[Owner] = relationship(lazy="select")


_engine: Engine | None = None
#: The process that made ``_engine``: another one (a forked worker) makes its own. ANY_PROCESS: the engine made
#: at import (WSGILAB_DB_CONNECT_AT_IMPORT=on), used in whatever process has it, the mistake the lab shows.
_engine_pid = 0
ANY_PROCESS = -1
_engine_lock = threading.Lock()


class NoDatabase(Exception):
    """No database is configured for this app (a server started without WSGILAB_DB_HOST): a 503."""


def _new_engine() -> Engine:
    """An engine whose pool holds up to ``WSGI_THREADS`` connections to the configured database."""
    try:
        settings = database.required()
    except database.Misconfigured as problem:
        raise NoDatabase(str(problem)) from None
    from wsgilab.container.db_trace import TracedConnection, TracedCursor

    url = URL.create("postgresql+psycopg", username=settings.user, password=settings.password,
                     host=settings.host, port=settings.port, database=settings.name)
    threads = int(os.environ.get("WSGI_THREADS") or 1)
    # pool_pre_ping: each connection is tried before a request gets it, so one the database dropped
    # (a restart) is replaced, not handed out to fail (hoptrace lab database-restart).
    made = create_engine(url, pool_size=threads, max_overflow=0, pool_timeout=POOL_TIMEOUT_S,
                         pool_pre_ping=True,
                         connect_args={"cursor_factory": TracedCursor, **settings.session_kwargs()})

    # SQLAlchemy's own hook for making a connection: psycopg's, with its commit and rollback traced.
    @event.listens_for(made, "do_connect")
    def _traced(dialect: object, record: object, cargs: tuple, cparams: dict) -> object:
        return TracedConnection.connect(*cargs, **cparams)

    return made


def engine() -> Engine:
    """This worker process's engine, made on first use."""
    global _engine, _engine_pid
    if _engine is None or _engine_pid not in (os.getpid(), ANY_PROCESS):
        with _engine_lock:
            if _engine is None or _engine_pid not in (os.getpid(), ANY_PROCESS):
                _engine = _new_engine()
                _engine_pid = os.getpid()
    return _engine


def _forget_pool() -> None:
    """In a new worker (gunicorn's post_fork): leave the connections pooled before the fork to the master.

    SQLAlchemy's way (its docs: "Using Connection Pools with Multiprocessing
    or os.fork()"): ``dispose(close=False)`` gives the engine a new, empty
    pool without closing the old one's connections, which the master still
    holds; this worker then connects on its own.
    """
    _engine.dispose(close=False)


if database.connect_at_import():
    # The mistake `hoptrace lab connection-before-fork` makes on purpose: the engine made, and a connection
    # opened and kept in its pool, as the module is imported, then used in any process. Where the server
    # imports the app in its master (WSGI_PRELOAD_APP=on), every worker it forks inherits that connection.
    _engine = _new_engine()
    _engine_pid = ANY_PROCESS
    with _engine.connect() as _imported:
        database.opened_at_import(_forget_pool, _imported.connection.dbapi_connection.info.backend_pid)
