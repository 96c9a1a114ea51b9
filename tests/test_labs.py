"""The failure labs, asserted: each one is a reliability or security test on both servers.

Every lab runs through nginx, exactly as `hoptrace lab NAME` runs it for a
user, on both servers (all apps on gunicorn, then on uWSGI), and every check
it makes must pass. A lab whose outcome is the same on both tiers (the same
nginx config, launcher and server settings: only how the processes are
started differs) runs on one of them when both run (``once_on``), which keeps
CI inside its time; run alone, a tier runs every lab.
"""

import pytest
from lab_http import get
from lab_stacks import lab_target

from wsgilab import labs
from wsgilab.labs import around_nginx


def _run(stack, name):
    target = lab_target(stack.stack)
    report = labs.run(name, target)
    failed = [f"{c.what}: expected {c.expected}; saw {c.seen}" for c in report.checks if not c.ok]
    assert report.ok, "\n".join(failed)
    return report


def test_forged_request_ids_and_trace_contexts_are_replaced_at_every_hop_and_no_line_breaks(stack):
    report = _run(stack, "forged-id")
    # per app: three forged ids, six forged traceparents, one joined trace; then the whole log twice
    assert len(report.checks) == 3 * (3 + 6 + 1) + 2
    assert sum("a well-formed traceparent" in c.what for c in report.checks) == 3


@pytest.mark.once_on("native")
def test_oversized_input_is_refused_at_nginx_and_what_nginx_accepts_reaches_the_app(stack):
    report = _run(stack, "oversized-input")
    refused = [c for c in report.checks if "no app reached" in c.expected]
    assert sorted({c.seen.split(",")[0] for c in refused}) == ["400", "413", "414"]
    assert len([c for c in report.checks if c.expected.startswith("200 from the app")]) == 9


def test_unknown_hosts_are_refused_and_forwarded_headers_are_nginx_own(stack):
    report = _run(stack, "host-and-proxy-headers")
    assert [c.seen.split(",")[0] for c in report.checks[:2]] == ["421", "421"]


def test_no_way_around_nginx_is_counted_only_where_it_was_measured():
    # exposure and host-and-proxy-headers pass a "no way there" check only on a route or a probe that ran
    assert around_nginx.no_local_route(around_nginx.host_route("198.51.100.1"))  # TEST-NET-2: off this host
    assert not around_nginx.no_local_route(around_nginx.host_route("127.0.0.1"))  # local via lo
    assert not around_nginx.no_local_route("unknown: no `ip` command to ask the routing table")
    seen = around_nginx.neighbour_connects("wsgilab-no-such-container", "127.0.0.1", 9)
    assert seen != "connected" and not seen.startswith("no connection: "), seen


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


@pytest.mark.once_on("native")
def test_a_view_over_the_worker_timeout_is_a_500_or_502_and_over_nginx_read_timeout_a_504(stack):
    report = _run(stack, "worker-timeout")
    statuses = [c.seen.split(" ")[0] for c in report.checks if "/slow" in c.what]
    # gunicorn's worker answers 500 on its way out; a uWSGI worker is SIGKILLed and nginx answers 502
    over_worker_limit = {"gunicorn": "500", "uwsgi": "502"}[stack.server]
    assert statuses == [over_worker_limit] * 3 + ["504"] * 3
    # the stack is back on its defaults: a 3 s view is served
    assert stack.stack.settings == {}
    assert get(stack.port, "/raw/slow?ms=3000").status == 200


@pytest.mark.once_on("native")
def test_a_worker_killed_mid_post_gives_one_502_no_retry_and_the_next_request_is_served(stack):
    report = _run(stack, "killed-worker")
    assert [c.seen.split(" ")[0] for c in report.checks] == ["502", "nginx_error:", "200"] * 3
    # The 502 says why at the nginx hop: nginx's error line, attached to the request by its connection.
    assert all("prematurely closed" in c.seen for c in report.checks if c.seen.startswith("nginx_error"))


def test_a_lab_that_changes_the_stack_says_so_when_it_cannot():
    report = labs.run("killed-worker", labs.Target(port=1, log_lines=list))
    assert not report.ok and "needs" in report.checks[0].seen


@pytest.mark.once_on("native")
def test_more_slow_requests_than_workers_queue_and_threads_take_them_at_once(stack):
    report = _run(stack, "queueing")
    assert len(report.checks) == 2 * (1 + 3)  # without and with threads: every worker ready, then every app


@pytest.mark.once_on("native")
def test_long_polls_hold_every_sync_worker_so_ordinary_requests_queue_behind_them(stack):
    report = _run(stack, "long-requests")  # on uvicorn, where they do not: tests/test_asgi.py
    assert [("waited in the queue until one of them ended" in c.expected) for c in report.checks] == [True]


@pytest.mark.once_on("native")
def test_a_websocket_upgrade_reaches_the_wsgi_app_which_can_only_refuse_it_426(stack):
    report = _run(stack, "websocket")  # on uvicorn, where it is taken: tests/test_asgi.py
    assert [c.seen.startswith("426;") for c in report.checks] == [True, True]  # raw, django


@pytest.mark.once_on("native")
def test_a_full_listen_queue_ends_in_a_504_at_the_connect_timeout_and_is_logged_not_hung(stack):
    report = _run(stack, "full-listen-queue")
    # per app: the kernel's socket before, the queue filled, the burst, the traces of the last served and of a
    # dropped request, nginx's error log, (uWSGI's own line,) the next request
    assert len(report.checks) == 3 * (7 + (stack.server == "uwsgi"))
    # the queue is filled one request at a time, so exactly backlog + 1 wait and one runs: 3 served, 5 dropped
    assert [c.seen.split(" (")[0] for c in report.checks if c.what.endswith("/slow?ms=3000")] == ["3 x 200"] * 3
    if stack.server == "uwsgi":
        assert all("listen queue of socket" in c.seen for c in report.checks if c.what.endswith("uWSGI's log"))


@pytest.mark.one_server_on("compose", "gunicorn")  # Docker's part: the same for uWSGI
def test_a_reload_under_load_fails_nothing_a_restart_only_its_gap_and_a_stop_lets_requests_finish(stack):
    report = _run(stack, "reload-and-stop")
    assert len(report.checks) == 3 + 3 + 3 * 2
    # a stopped app is a 502 at once in both tiers: nginx asks for its address per request
    assert [c.seen.split(" ")[0] for c in report.checks if c.what.endswith("while it is stopped")] == ["502"] * 3


@pytest.mark.once_on("compose")  # no restart in it: as fast there, where the tier has room
def test_slow_clients_are_held_by_nginx_and_never_tie_up_a_worker(stack):
    report = _run(stack, "slow-clients")
    assert len(report.checks) == 2 + 3


@pytest.mark.once_on("compose")  # no restart in it: as fast there, on the side that evens out CI's two
def test_slow_readers_free_the_worker_when_nginx_buffers_and_hold_it_when_the_response_opts_out(stack):
    report = _run(stack, "slow-readers")
    assert len(report.checks) == 3 * 2


def test_a_slow_reader_counts_the_body_it_read_chunked_or_not_and_a_body_cut_short_is_not_whole():
    import socket

    from wsgilab.labs.slow_readers import _body_bytes

    def counted(response: bytes) -> int:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            theirs.sendall(response)
            theirs.close()
            return _body_bytes(ours)

    assert counted(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello") == 5
    assert counted(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello") == -1
    assert counted(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello") == 5
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\na;x=1\r\n0123456789\r\n0\r\n\r\n"
    assert counted(chunked) == 13
    assert counted(chunked[:-12]) == -1  # ends inside the second chunk
    assert counted(b"HTTP/1.1 200 OK\r\n") == -1


@pytest.mark.one_server_on("compose", "gunicorn")  # Docker's part: the same for uWSGI
def test_an_app_that_fails_to_import_exits_saying_why_and_nginx_answers_502(stack):
    report = _run(stack, "import-failure")
    assert len(report.checks) == 5
    assert "Worker failed to boot" in report.checks[0].seen or "GAME OVER" in report.checks[0].seen
