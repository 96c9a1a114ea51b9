"""The database's two passwords, made once, before PostgreSQL first starts: ``python -m wsgilab.container.db_secrets``.

compose runs it as the one-shot ``db-secrets`` service, and the db service
starts only once it has ended well. It writes, each only if it is not there yet:

- ``/run/wsgilab-db-admin/password``: the superuser's (``postgres``), read
  by the postgres image's entrypoint (``POSTGRES_PASSWORD_FILE``), as root.
  Only db-secrets and db mount that volume: the apps never see it.
- ``/run/wsgilab-db/password``: the apps' role's (``wsgilab``, no superuser),
  read by the role's creation script in the db service
  (db/initdb.d) and by the apps (``WSGILAB_DB_PASSWORD_FILE``).

Each is ``WSGILAB_DB_PASSWORD`` (the apps') from .env if set, else 32 random
bytes (``secrets.token_urlsafe``): no password is in the repository, and none
is in any container's environment but this one's. PostgreSQL takes a
password when it creates its data volume, and keeps it: a WSGILAB_DB_PASSWORD
that differs from the one already written stops here with a message, instead
of leaving the apps with a password the database does not know.
"""

from __future__ import annotations

import os
import secrets
import sys

#: Why a WSGILAB_DB_PASSWORD is refused, and what to do ({start_afresh}: the command that deletes the data).
PASSWORD_DIFFERS = ("WSGILAB_DB_PASSWORD differs from the password the database was created with; PostgreSQL keeps "
                    "its first one. Empty WSGILAB_DB_PASSWORD to keep it, or start afresh (`{start_afresh}` deletes "
                    "the data)")

ADMIN_FILE = "/run/wsgilab-db-admin/password"
APP_FILE = "/run/wsgilab-db/password"


def write_once(path: str, password: str, mode: int) -> bool:
    """Write ``password`` to ``path`` with ``mode`` unless the file exists; whether it wrote."""
    if os.path.exists(path):
        return False
    temporary = f"{path}.new"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w") as file:
        file.write(password + "\n")
    os.chmod(temporary, mode)  # whatever the umask
    os.replace(temporary, path)
    return True


def main(env: dict[str, str] | None = None, admin_file: str = ADMIN_FILE, app_file: str = APP_FILE) -> int:
    env = dict(os.environ) if env is None else env
    chosen = env.get("WSGILAB_DB_PASSWORD", "").strip()  # the apps and PostgreSQL read it stripped too
    if os.path.exists(app_file) and chosen:
        with open(app_file, encoding="utf-8") as file:
            if file.read().strip() != chosen:
                print("db-secrets: " + PASSWORD_DIFFERS.format(start_afresh="docker compose down --volumes"),
                      file=sys.stderr)
                return 1
    # The superuser's: only root, in the db container, reads it.
    write_once(admin_file, secrets.token_urlsafe(32), 0o600)
    # The apps' role's: the db container's postgres user reads it too, so it is readable by all who mount it.
    wrote = write_once(app_file, chosen or secrets.token_urlsafe(32), 0o644)
    print(f"db-secrets: {'wrote' if wrote else 'kept'} the database passwords", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
