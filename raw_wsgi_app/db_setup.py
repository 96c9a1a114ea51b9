"""Create the raw app's tables and seed them, idempotently, with plain SQL: `python -m db_setup`.

The launcher (wsgilab.container.launch) runs it before it starts the server,
in a process of its own, so no connection it opens can be inherited by the
server's workers. Replicas starting together take turns: the work runs under
a transaction-level advisory lock, and every statement is one that a second
run finds done (IF NOT EXISTS, ON CONFLICT DO NOTHING, a seed only into an
empty table).
"""

import sys

import psycopg

from wsgilab.container import database

#: The advisory lock's key: any number the three apps' setups do not share.
LOCK_KEY = 0x7261770001  # "raw", 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS raw_owner (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS raw_item (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    owner_id bigint NOT NULL REFERENCES raw_owner (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
"""


def main() -> int:
    settings = database.configured()
    if settings is None:
        return 0
    with psycopg.connect(**settings.connect_kwargs()) as conn:  # one transaction, committed at the end
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        conn.execute(SCHEMA)
        with conn.cursor() as cursor:
            cursor.executemany("INSERT INTO raw_owner (name) VALUES (%s) ON CONFLICT (name) DO NOTHING",
                               [[owner] for owner in database.SEED_OWNERS])
        if conn.execute("SELECT count(*) FROM raw_item").fetchone()[0] == 0:
            owners = database.SEED_OWNERS[:-1]  # the seed's items belong to the named owners, not to "you"
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO raw_item (name, owner_id) SELECT %s, id FROM raw_owner WHERE name = %s",
                    [[f"item {n}", owners[n % len(owners)]] for n in range(1, database.SEED_ITEMS + 1)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
