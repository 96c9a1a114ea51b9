"""The Flask app's database endpoints, through SQLAlchemy 2's ORM (models.py).

``/items`` (GET: newest first, ``?limit=N``, ``?n_plus_one=1``; POST: a new
item from ``{"name": "..."}``), ``/items/<id>`` and ``/query?ms=N``. The same
as the raw and Django apps' (their rules: wsgilab.container.database).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, request
from sqlalchemy import exc, select, text
from sqlalchemy.orm import Session, joinedload, selectinload

from wsgilab.container import database
from wsgilab.container.db_trace import timed_connection

from .models import Item, NoDatabase, Owner, engine

#: database.ANNOUNCE, with SQLAlchemy's named parameter.
ANNOUNCE = text(f"SELECT pg_notify('{database.CHANNEL}', :payload)")

bp = Blueprint("items", __name__)


@contextmanager
def session() -> Iterator[Session]:
    """A session on one of the worker's pooled connections (its wait traced), committed if the block ends well."""
    with timed_connection(engine().connect, "pool", lambda conn: conn.connection.dbapi_connection.info.backend_pid) \
            as connection:
        with Session(bind=connection) as db:
            yield db
            db.commit()


def answer(run: Callable[[], tuple[Any, int]]) -> tuple[Any, int]:
    """Run a view's body, turning bad input and an unreachable database into their statuses."""
    try:
        return run()
    except database.BadInput as problem:
        return {"error": str(problem)}, 400
    except NoDatabase as problem:
        return {"error": str(problem)}, 503
    except exc.TimeoutError:
        return {"error": "no database connection came free within 5 s: the pool's are all busy"}, 503
    # InternalError too: psycopg raises it ("got no result from the query") for a connection cut mid-query.
    except (exc.OperationalError, exc.InterfaceError, exc.InternalError) as problem:
        first_line = str(problem.orig).strip().splitlines()[0] if str(problem.orig).strip() else "OperationalError"
        return {"error": f"the database failed: {first_line}"}, 503


def _item(item: Item) -> dict[str, Any]:
    return database.item_json(item.id, item.name, item.owner.name, item.created_at)


@bp.get("/items")
def list_items():
    """The newest items: one query for them and one for their owners, or one per item with ?n_plus_one=1."""
    def run():
        limit = database.parse_limit(request.args.get("limit"))
        n_plus_one = database.parse_flag("n_plus_one", request.args.get("n_plus_one"))
        query = select(Item).order_by(Item.id.desc()).limit(limit)
        if not n_plus_one:
            query = query.options(selectinload(Item.owner))
        with session() as db:
            listed = [_item(item) for item in db.scalars(query)]  # item.owner: a query each, unless loaded
        return {"items": listed, "count": len(listed)}, 200

    return answer(run)


@bp.post("/items")
def create_item():
    """Store a new item from {"name": "..."}: 201 with it once committed; 400 for any other body."""
    def run():
        length = request.content_length
        if length is None:
            raise database.BadInput('send the item as a JSON body with a Content-Length: {"name": "..."}')
        name = database.parse_new_item(request.stream.read(min(length, database.MAX_ITEM_BODY + 1)))
        with session() as db:
            owner = db.scalars(select(Owner).where(Owner.name == database.POSTED_BY)).one()
            item = Item(name=name, owner=owner)
            db.add(item)
            db.flush()  # the INSERT, so the id and created_at are known
            db.refresh(item)
            stored = _item(item)
            # Announced to the waiting clients when the write commits.
            db.execute(ANNOUNCE, {"payload": database.announcement("flask", stored)})
        # session() committed when its block ended: the 201 goes out only for a stored write.
        return stored, 201

    return answer(run)


@bp.get("/items/<int:item_id>")
def get_item(item_id: int):
    """One item by its id, or 404."""
    def run():
        if item_id >= 2**63:
            return {"error": f"no item {item_id}"}, 404
        with session() as db:
            item = db.get(Item, item_id, options=[joinedload(Item.owner)])
            return ({"error": f"no item {item_id}"}, 404) if item is None else (_item(item), 200)

    return answer(run)


@bp.get("/query")
def sleep_query():
    """A query that sleeps ms milliseconds in PostgreSQL (pg_sleep): the database's time, in the trace."""
    def run():
        delay = database.parse_sleep_ms(request.args.get("ms"))
        with session() as db:
            backend_pid = db.execute(text("SELECT pg_sleep(:s), pg_backend_pid()"), {"s": delay / 1000}).one()[1]
        return {"slept_ms": delay, "backend_pid": backend_pid}, 200

    return answer(run)
