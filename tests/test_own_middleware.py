"""Your own WSGI middleware around an app (<APP>_WSGI_MIDDLEWARE, docs/middleware.md): it runs, and the trace shows it.

Native tier when both run: the setting reaches the launcher the same way on
both tiers, and the tour's step 11 runs it on compose. A lab asked to run while
a middleware changes the apps' bodies says so instead of failing on them.
"""

import time
import uuid

import pytest
from lab_http import get
from lab_stacks import lab_target, wait_until_served
from test_tracing import _trace

from wsgilab import labs
from wsgilab.settings import SettingError, check_value

FOOTER = b"(footer added by middleware/footer.py)\n"


@pytest.mark.once_on("native")
def test_a_middleware_named_by_the_setting_wraps_the_app_and_shows_in_its_trace(stack):
    request_id = "own-mw-" + uuid.uuid4().hex
    servers = dict(stack.stack.servers)
    try:
        # Two, nested: the first named is the outermost. footer:appended changes the body, and its length.
        stack.stack.reconfigure({"RAW_WSGI_MIDDLEWARE": "app_timer:timed,footer:appended"})
        _until_footed(stack.port)  # wait_until_served reads the hello page as JSON, which the footer ends
        reply = get(stack.port, "/raw/", headers={"X-Request-ID": request_id})
        plain = get(stack.port, "/flask/")  # only the app the setting names is wrapped
        # A lab reads the apps' JSON answers: with the footer on, it says why it will not run.
        refused = labs.run("forged-id", lab_target(stack.stack, control=False))
        # Read before the defaults come back: under compose that recreates the container, and its log with it.
        wsgi = [e for e in _trace(stack, request_id) if e["hop"] == "wsgi"]
    finally:
        stack.stack.reconfigure({})
        wait_until_served(stack.port, servers)
    assert reply.status == 200 and reply.header("X-App-Time").endswith(" ms"), reply.headers
    assert reply.body.endswith(FOOTER) and int(reply.header("Content-Length")) == len(reply.body), reply.headers
    assert plain.header("X-App-Time") is None and not plain.body.endswith(FOOTER)
    assert [(check.what, check.ok, check.seen) for check in refused.checks] == [
        ("the apps answer in JSON", False, "raw: 200 with a body that is not JSON")], refused.checks
    calls = [(e["event"], e.get("middleware")) for e in wsgi if e["event"].startswith("middleware_")]
    assert calls[:4] == [("middleware_called", "app_timer:timed"), ("middleware_passed_on", "app_timer:timed"),
                         ("middleware_called", "footer:appended"), ("middleware_passed_on", "footer:appended")], calls
    names = [e["event"] for e in wsgi]
    assert names[:6] == ["app_called", *(name for name, _ in calls[:4]), "start_response"], names
    assert names.index("middleware_returned") > names.index("start_response"), names


def _until_footed(port: int, within_s: float = 60) -> None:
    """Wait until the raw app answers with the footer: it was restarted inside the two middlewares."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            if get(port, "/raw/", timeout=5).body.endswith(FOOTER):
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"/raw/ never answered with the footer in {within_s:.0f} s"
        time.sleep(0.1)


@pytest.mark.parametrize("value", ["app_timer", "app_timer:timed,", "app timer:timed", "app_timer:timed;rm"])
def test_a_middleware_setting_that_names_no_factory_is_refused_with_what_it_takes(value):
    with pytest.raises(SettingError, match="module:name, separated by commas"):
        check_value("middleware", "RAW_WSGI_MIDDLEWARE", value)
