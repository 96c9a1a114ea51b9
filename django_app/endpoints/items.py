"""The Django app's database endpoints, through Django's ORM (models.py).

``/items`` (GET: newest first, ``?limit=N``, ``?n_plus_one=1``; POST: a new
item from ``{"name": "..."}``), ``/items/<id>`` and ``/query?ms=N``. The same
as the raw and Flask apps' (their rules: wsgilab.container.database).

Django opens a connection the first time a request queries and, with
``CONN_MAX_AGE`` 0 (its default, and this app's), closes it when the request
ends: each request that queries pays for a new connection. The queries are
in the trace through ``connection.execute_wrapper`` (wsgilab.container.django_trace).
"""

from django.conf import settings
from django.db import InterfaceError, InternalError, OperationalError, connection, transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_safe

from wsgilab.container import database

from .models import Item, Owner


class Unavailable(Exception):
    """No database is configured (the native tier): a 503."""


def _database():
    """Go on only where a database is configured: called once a view has checked its input."""
    if not settings.WSGILAB_DATABASE:
        raise Unavailable(settings.WSGILAB_DATABASE_PROBLEM or database.NOT_CONFIGURED)


def _answer(run):
    """Run a view's body -> (payload, status), turning bad input and an unreachable database into statuses."""
    try:
        payload, status = run()
    except database.BadInput as problem:
        payload, status = {"error": str(problem)}, 400
    except Unavailable as problem:
        payload, status = {"error": str(problem)}, 503
    # InternalError too: psycopg raises it ("got no result from the query") for a connection cut mid-query.
    except (OperationalError, InterfaceError, InternalError) as problem:
        first_line = str(problem).strip().splitlines()[0] if str(problem).strip() else "OperationalError"
        payload, status = {"error": f"the database failed: {first_line}"}, 503
    return JsonResponse(payload, status=status)


def _item(item):
    return database.item_json(item.id, item.name, item.owner.name, item.created_at)


@csrf_exempt  # an API endpoint for curl and the tests, not a browser form
@require_http_methods(["GET", "HEAD", "POST"])
def items(request):
    """GET: the newest items (with their owners in the same query, or one query per item with ?n_plus_one=1);
    POST: store a new one."""
    if request.method == "POST":
        return _answer(lambda: _create(request))

    def run():
        limit = database.parse_limit(request.GET.get("limit"))
        n_plus_one = database.parse_flag("n_plus_one", request.GET.get("n_plus_one"))
        _database()
        listed = Item.objects.order_by("-id")
        if not n_plus_one:
            listed = listed.select_related("owner")  # a JOIN: one query for items and owners
        found = [_item(item) for item in listed[:limit]]  # item.owner: a query each, unless selected
        return {"items": found, "count": len(found)}, 200

    return _answer(run)


def _create(request):
    length = request.META.get("CONTENT_LENGTH") or ""
    if not length.isdigit():
        raise database.BadInput('send the item as a JSON body with a Content-Length: {"name": "..."}')
    name = database.parse_new_item(request.read(min(int(length), database.MAX_ITEM_BODY + 1)))
    _database()
    with transaction.atomic():
        item = Item.objects.create(name=name, owner=Owner.objects.get(name=database.POSTED_BY))
        with connection.cursor() as cursor:  # announced to the waiting clients when the write commits
            cursor.execute(database.ANNOUNCE, [database.announcement("django", _item(item))])
    # atomic() committed when its block ended: the 201 goes out only for a stored write.
    return _item(item), 201


@require_safe
def item(request, item_id):
    """One item by its id, or 404."""
    def run():
        _database()
        found = Item.objects.select_related("owner").filter(id=item_id).first() if item_id < 2**63 else None
        return ({"error": f"no item {item_id}"}, 404) if found is None else (_item(found), 200)

    return _answer(run)


@require_safe
def sleep_query(request):
    """A query that sleeps ms milliseconds in PostgreSQL (pg_sleep): the database's time, in the trace."""
    def run():
        delay = database.parse_sleep_ms(request.GET.get("ms"))
        _database()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(%s), pg_backend_pid()", [delay / 1000])
            backend_pid = cursor.fetchone()[1]
        return {"slept_ms": delay, "backend_pid": backend_pid}, 200

    return _answer(run)

