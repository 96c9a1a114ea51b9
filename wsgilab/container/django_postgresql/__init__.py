"""Django's PostgreSQL backend, with the time it takes to open a connection in the request's trace.

    DATABASES = {"default": {"ENGINE": "wsgilab.container.django_postgresql", ...}}

With ``CONN_MAX_AGE`` 0, Django's default, every request that queries opens a
connection (TCP, PostgreSQL's startup and SCRAM authentication, a backend
process forked for it) and closes it at its end. That cost is in no query's
time, so this backend records it as the ``db_connection`` event ("connect").
Everything else is Django's own backend (``base.py`` subclasses it).
"""
