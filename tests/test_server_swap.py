"""Swapping apps' servers: each comes back on the server it is set to, nginx follows, the others keep theirs.

Runs on each tier: on compose it is where Granian, Waitress and uvicorn run from the images
(tests/test_more_servers.py and tests/test_asgi.py drive them further on the native tier).
"""

import uuid

import pytest
import websocket
from lab_http import get
from lab_stacks import APPS, SECRET_SENTINEL, lab_target, wait_until_served
from test_endpoints import UPSTREAM_PROTOCOL as PROTOCOL

from wsgilab import labs
from wsgilab.labs.kit import nginx_record

#: The swap: django to Granian, flask to Waitress, and the raw app's ASGI side to uvicorn.
SWAPPED = {"django": "granian", "flask": "waitress", "raw": "uvicorn"}


def _answered_by(stack, app):
    reply = get(stack.port, f"/{app}/")
    return reply.json()["server"], reply.header("X-Upstream-Protocol")


def test_swapping_apps_to_granian_waitress_and_uvicorn_changes_who_answers_and_back(tier_stack):
    # From whatever servers the last test left (a swap and one back: each recreates only the swapped apps'
    # containers and nginx's).
    before = tier_stack.servers or {app: "gunicorn" for app in APPS}
    tier_stack.use(before)

    tier_stack.use({**before, **SWAPPED})
    seen = {}
    for app, server in SWAPPED.items():
        assert _answered_by(tier_stack, app) == (server, "http")
        # The raw app's ASGI side shows its scope, where the client is an (address, port) pair.
        shown = "scope" if server == "uvicorn" else "environ"
        reply = get(tier_stack.port, f"/{app}/{shown}", headers={"X-Request-ID": uuid.uuid4().hex})
        assert SECRET_SENTINEL not in reply.body.decode()
        seen[reply.header("X-Request-ID")] = (reply.json()["client"][0] if server == "uvicorn"
                                              else reply.json()["cgi"]["REMOTE_ADDR"])
    # All three take the client's address from X-Forwarded-For, trusting it from nginx (gunicorn keeps nginx's).
    target = lab_target(tier_stack, control=False)
    traces = target.records_of(list(seen), {"nginx"})
    assert seen == {request_id: nginx_record(traces[request_id])["client"] for request_id in seen}
    # nginx passes a websocket's upgrade on, and uvicorn takes it (its wsproto from the image).
    ws = websocket.create_connection(f"ws://127.0.0.1:{tier_stack.port}/raw/ws", host="localhost", timeout=10)
    try:
        ws.send("through nginx")
        assert ws.recv() == "through nginx"
    finally:
        ws.close()

    tier_stack.use(before)
    for app in SWAPPED:
        assert _answered_by(tier_stack, app) == (before[app], PROTOCOL[before[app]])


@pytest.mark.once_on("native")  # two restarts of the raw app, processes there: half the time compose takes
def test_long_polls_on_gunicorns_asgi_worker_leave_it_free_for_ordinary_requests(tier_stack):
    # RAW_INTERFACE=asgi under gunicorn, as docs/asgi.md shows it: the lab asks the app which side it runs
    # and keeps it there while it restarts the app on 2 workers (on uvicorn: tests/test_asgi.py).
    tier_stack.reconfigure({"RAW_INTERFACE": "asgi"})
    try:
        tier_stack.use({app: "gunicorn" for app in APPS})
        wait_until_served(tier_stack.port, {app: "gunicorn" for app in APPS})
        target = lab_target(tier_stack)
        report = labs.run("long-requests", target)
    finally:
        tier_stack.reconfigure({})
    assert report.ok, [(c.what, c.expected, c.seen) for c in report.checks if not c.ok]
    assert [c.what.split(" with ")[0] for c in report.checks] == ["/raw/ on gunicorn's ASGI worker"]
    assert [("taken up while they still waited" in c.expected) for c in report.checks] == [True]
