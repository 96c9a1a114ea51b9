"""Create the Flask app's tables (SQLAlchemy's create_all) and seed them, idempotently: `python -m db_setup`.

The launcher (wsgilab.container.launch) runs it before it starts the server,
in a process of its own, so no pooled connection of it reaches the workers.
Replicas starting together take turns under a transaction-level advisory
lock; create_all creates only the tables that are missing, and the seed goes
only into empty tables.
"""

import sys

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from labflask.models import Base, Item, Owner
from wsgilab.container import database

#: The advisory lock's key: any number the three apps' setups do not share.
LOCK_KEY = 0x666C610001  # "fla", 1


def main() -> int:
    settings = database.configured()
    if settings is None:
        return 0
    url = URL.create("postgresql+psycopg", username=settings.user, password=settings.password,
                     host=settings.host, port=settings.port, database=settings.name)
    engine = create_engine(url)
    with Session(engine) as db, db.begin():
        db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        Base.metadata.create_all(db.connection())
        known = set(db.scalars(select(Owner.name)))
        db.add_all(Owner(name=name) for name in database.SEED_OWNERS if name not in known)
        db.flush()
        if db.scalar(select(func.count()).select_from(Item)) == 0:
            owners = list(db.scalars(select(Owner).where(Owner.name != database.POSTED_BY).order_by(Owner.id)))
            db.add_all(Item(name=f"item {n}", owner=owners[n % len(owners)])
                       for n in range(1, database.SEED_ITEMS + 1))
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
