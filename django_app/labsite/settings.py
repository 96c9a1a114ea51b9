"""Django settings for the wsgi-lab project.

Everything that differs between a laptop and a deployment comes from the
environment (see ``.env`` and ``docker-compose.yml``); the defaults are the
safe ones: DEBUG off, only local host names allowed. The one unsafe default is
the development SECRET_KEY, and it says so loudly on every start.
"""

import os
import sys
from pathlib import Path

from wsgilab.container import database
from wsgilab.settings import SETTINGS

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str) -> list[str]:
    """A list from the environment, its items separated by commas or spaces."""
    return os.environ.get(name, default).replace(",", " ").split()


# --- Secrets and debugging -------------------------------------------------

# Set DJANGO_SECRET_KEY in the environment (or .env) for anything but a local
# lab. Without it a fixed development key is used, and every process says so.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "").strip()
if not SECRET_KEY:
    SECRET_KEY = "django-insecure-wsgi-lab-development-key-do-not-deploy"
    print("labsite.settings: WARNING: DJANGO_SECRET_KEY is not set; using an insecure development key",
          file=sys.stderr)

# Off unless DJANGO_DEBUG=1: with DEBUG on, /error would send a traceback (and
# settings) to the client.
DEBUG = _env_flag("DJANGO_DEBUG")

# The Host header values this site answers to; nginx passes the client's Host on.
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

# --- Application definition ------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "endpoints",
]

# Each middleware wraps the next one, as WSGI middleware wraps an app: a
# request passes down this list and its response passes back up.
MIDDLEWARE = [
    # First, so outermost: marks the request entering and the response leaving
    # Django's middleware stack in the request's hop trace.
    "wsgilab.container.django_trace.HopTraceMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "labsite.urls"
WSGI_APPLICATION = "labsite.wsgi.application"
TEMPLATES = []

# PostgreSQL, where compose runs one (the db service): its address, name and
# role from the environment, its password from the file WSGILAB_DB_PASSWORD_FILE
# names (wsgilab.container.database), never from a variable. By default
# CONN_MAX_AGE 0 (Django's default): a connection per request that queries,
# closed at its end (DJANGO_DB_CONNECTIONS changes it).
# Without one (a server started without WSGILAB_DB_HOST) the database endpoints answer 503, and Django
# gets an SQLite file it never opens, so that it starts as it always has.
#: How Django holds its connections (DJANGO_DB_CONNECTIONS): a new one per request that queries, closed at its
#: end; one per worker thread, kept for 10 minutes and checked before each request reuses it; or from its pool
#: (Django 5.1+, psycopg_pool), per worker process, which needs CONN_MAX_AGE 0.
_CONNECTIONS = {"per-request": {"CONN_MAX_AGE": 0}, "persistent": {"CONN_MAX_AGE": 600, "CONN_HEALTH_CHECKS": True},
                "pool": {"CONN_MAX_AGE": 0}}
_HOLD = SETTINGS["DJANGO_DB_CONNECTIONS"].value(os.environ.get("DJANGO_DB_CONNECTIONS"))
try:
    _DATABASE, WSGILAB_DATABASE_PROBLEM = database.configured(), ""
except database.Misconfigured as problem:  # the database endpoints say so (503); the rest is served
    _DATABASE, WSGILAB_DATABASE_PROBLEM = None, str(problem)
WSGILAB_DATABASE = _DATABASE is not None
if _DATABASE is not None:
    DATABASES = {
        "default": {
            # Django's own backend, with the time a new connection takes in the trace.
            "ENGINE": "wsgilab.container.django_postgresql",
            "HOST": _DATABASE.host,
            "PORT": _DATABASE.port,
            "NAME": _DATABASE.name,
            "USER": _DATABASE.user,
            "PASSWORD": _DATABASE.password,
            # DJANGO_DB_CONNECTIONS: per-request (CONN_MAX_AGE 0), persistent, or Django's own pool.
            **_CONNECTIONS[_HOLD],
            # server_side_binding: the values go to PostgreSQL apart from the statement, as the raw app's
            # and SQLAlchemy's do (Django's default binds them into its text, where an error's log line
            # would show them).
            # session_kwargs: connect_timeout, statement_timeout (WSGILAB_DB_STATEMENT_TIMEOUT_MS) and
            # application_name (the service: pg_stat_activity names the app), as for the other two apps.
            "OPTIONS": {"server_side_binding": True, **_DATABASE.session_kwargs(),
                        **({"pool": {"min_size": 1, "max_size": int(os.environ.get("WSGI_THREADS") or 1),
                                     "timeout": 5.0}}
                           if _HOLD == "pool" else {})},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("DJANGO_SQLITE_PATH", "/tmp/wsgi-lab-django.sqlite3"),
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- Security --------------------------------------------------------------

# nginx receives plain HTTP in this lab, so the HTTPS-only settings that
# `manage.py check --deploy` asks for (HSTS, SSL redirect, secure cookies) are
# left off; everything else it checks is on.
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# --- Logging ---------------------------------------------------------------

# Errors (such as /error's exception, with its traceback) go to the root
# logger, and the process that hosts the app decides how they are written:
# under wsgi-lab's servers, as JSON lines on the container's output
# (wsgilab.container.log_lines), where `docker compose logs` collects them;
# under `manage.py runserver`, as plain text on stderr. The client only ever
# sees a plain 500 page.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # No handlers of Django's own (this replaces its console and mail_admins
    # ones): every record goes up to the root logger.
    "loggers": {"django": {"handlers": [], "level": "WARNING", "propagate": True}},
}
