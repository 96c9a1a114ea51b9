"""Bring the Django app's tables up to date (its migrations, seed data included): `python -m db_setup`.

The launcher (wsgilab.container.launch) runs it before it starts the server,
in a process of its own, so Django's connection here never reaches the
workers. ``migrate`` is not safe to run twice at once, so replicas starting
together take turns under an advisory lock held by the same connection
migrate uses; a second run finds nothing to do.
"""

import os
import sys

#: The advisory lock's key: any number the three apps' setups do not share.
LOCK_KEY = 0x646A610001  # "dja", 1


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings")
    import django
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    django.setup()
    if not settings.WSGILAB_DATABASE:
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
    try:
        call_command("migrate", interactive=False, verbosity=0)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
        connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
