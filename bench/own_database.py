"""A PostgreSQL of a bench run's own, for ``/items``, started as the native test stack starts one.

bench/trace_profile.py calls the apps in its own process, and bench/statement_comment.py times
statements on one connection, with no stack around them: each needs a database without the rest of a
stack. This starts one (tests/native_database.py) and sets up each app's tables by the app's own
``db_setup``, as the launcher does before a server starts.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def started(app_dirs: dict[str, Path]) -> tuple[object, dict[str, str]]:
    """The database, running, and what the apps are given to reach it (WSGILAB_DB_*); ``app_dirs``: each app's
    folder by its name. It logs no statements (WSGILAB_DB_LOG_MIN_MS=-1): its log would take CPU from the
    process measured. ``stopped`` ends it."""
    sys.path.insert(0, str(REPO / "tests"))
    from lab_stacks import free_port
    from native_database import NativeDatabase

    from wsgilab.container.launch import set_up_database

    workdir = Path(tempfile.mkdtemp(prefix="wsgi-lab-bench-db-", dir="/tmp"))
    workdir.chmod(0o755)  # PostgreSQL runs as its own user where the bench runs as root
    database = NativeDatabase(workdir, free_port())
    database.settings = {"WSGILAB_DB_LOG_MIN_MS": "-1"}
    try:
        database.create()
        env = database.app_environment()
        for app, folder in app_dirs.items():
            set_up_database({**os.environ, **env, "WSGI_APP_DIR": str(folder), "SCRIPT_NAME": f"/{app}"})
    except BaseException:
        stopped(database)
        raise
    return database, env


def stopped(database) -> None:
    """End ``database`` and remove its files."""
    database.stop()
    shutil.rmtree(database.data.parent, ignore_errors=True)
