"""The failure labs, asserted: each one is a reliability or security test on both servers.

Every lab runs in every phase (both tiers; all apps on gunicorn, then on
uWSGI) through nginx, exactly as `hoptrace lab NAME` runs it for a user, and
every check it makes must pass.
"""

import pytest
from lab_stacks import hop_log_lines

from wsgilab import labs


def _run(stack, name):
    target = labs.Target(port=stack.port, log_lines=lambda: hop_log_lines(stack.stack))
    report = labs.run(name, target)
    failed = [f"{c.what}: expected {c.expected}; saw {c.seen}" for c in report.checks if not c.ok]
    assert report.ok, "\n".join(failed)
    return report


def test_forged_request_ids_are_replaced_at_every_hop_and_no_line_breaks(stack):
    report = _run(stack, "forged-id")
    assert len(report.checks) == 3 * 3 + 2  # three forgeries per app, then the whole log twice


def test_oversized_input_is_refused_at_nginx_and_what_nginx_accepts_reaches_the_app(stack):
    report = _run(stack, "oversized-input")
    refused = [c for c in report.checks if "no app reached" in c.expected]
    assert sorted({c.seen.split(",")[0] for c in refused}) == ["400", "413", "414"]
    assert len([c for c in report.checks if c.expected.startswith("200 from the app")]) == 9


def test_unknown_hosts_are_refused_and_forwarded_headers_are_nginx_own(stack):
    report = _run(stack, "host-and-proxy-headers")
    assert [c.seen.split(",")[0] for c in report.checks[:2]] == ["421", "421"]


def test_an_unknown_lab_name_says_which_labs_there_are():
    with pytest.raises(KeyError, match="forged-id"):
        labs.run("no-such-lab", labs.Target(port=1, log_lines=list))


def test_malformed_and_smuggling_requests_are_refused_and_nothing_is_smuggled(stack):
    report = _run(stack, "malformed-requests")
    statuses = {c.seen.split(";")[0] for c in report.checks if not c.what.endswith("bare LF line endings")}
    assert statuses <= {"400", "501"}, statuses
    # the one case nginx may accept: it became requests nginx itself saw
    lenient = [c for c in report.checks if c.what.endswith("bare LF line endings")]
    assert len(lenient) == 3 and all("seen by nginx: yes" in c.seen for c in lenient)
