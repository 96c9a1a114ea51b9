"""Swapping one app's server: the app comes back on the other server and nginx follows.

Runs on each tier. Only the swapped app changes; the others keep their server.
"""

from lab_http import get
from lab_stacks import APPS


def _answered_by(stack, app):
    reply = get(stack.port, f"/{app}/")
    return reply.json()["server"], reply.header("X-Upstream-Protocol")


def test_swapping_one_app_to_the_other_server_changes_who_answers(tier_stack):
    before = {app: "gunicorn" for app in APPS}
    tier_stack.use(before)
    assert _answered_by(tier_stack, "django") == ("gunicorn", "http")

    after = {**before, "django": "uwsgi"}
    tier_stack.use(after)
    assert _answered_by(tier_stack, "django") == ("uwsgi", "uwsgi")
    assert _answered_by(tier_stack, "flask") == ("gunicorn", "http")
    assert _answered_by(tier_stack, "raw") == ("gunicorn", "http")

    tier_stack.use(before)
    assert _answered_by(tier_stack, "django") == ("gunicorn", "http")
