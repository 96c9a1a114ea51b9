"""Swapping one app's server: the app comes back on the other server and nginx follows.

Runs on each tier. Only the swapped app changes; the others keep their server.
"""

from lab_http import get
from lab_stacks import APPS

OTHER = {"gunicorn": "uwsgi", "uwsgi": "gunicorn"}
PROTOCOL = {"gunicorn": "http", "uwsgi": "uwsgi"}


def _answered_by(stack, app):
    reply = get(stack.port, f"/{app}/")
    return reply.json()["server"], reply.header("X-Upstream-Protocol")


def test_swapping_one_app_to_the_other_server_changes_who_answers(tier_stack):
    # From whatever servers the last test left (one swap there, one back:
    # each recreates only django's container and nginx's).
    before = tier_stack.servers or {app: "gunicorn" for app in APPS}
    tier_stack.use(before)
    swapped = OTHER[before["django"]]

    tier_stack.use({**before, "django": swapped})
    assert _answered_by(tier_stack, "django") == (swapped, PROTOCOL[swapped])
    for app in ("flask", "raw"):
        assert _answered_by(tier_stack, app) == (before[app], PROTOCOL[before[app]])

    tier_stack.use(before)
    assert _answered_by(tier_stack, "django") == (before["django"], PROTOCOL[before["django"]])
