"""Fields of the wsgi record HopTrace writes: the thread that called the app, and one status.

The thread is the kernel's id for it (as ``ps -L`` shows it). The queueing lab
reads it to tell how many of a Granian worker's threads ran a burst: Granian
starts them one at a time, so a worker can run a burst on fewer than it was
given (docs/findings.md).
"""

import json
import sys
import threading

import pytest

from wsgilab.container.wsgi_trace import HopTrace


def _app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def test_each_wsgi_record_names_the_thread_that_called_the_app():
    lines: list[str] = []
    traced = HopTrace(_app, service="raw", server="test", write_line=lines.append)
    called_on: dict[str, int] = {}
    both_in = threading.Barrier(2)  # two threads alive at once: the kernel gives them two ids

    def call(request_id: str) -> None:
        both_in.wait(5)
        body = traced({"HTTP_X_REQUEST_ID": request_id, "REQUEST_METHOD": "GET"}, lambda *_: None)
        list(body)
        body.close()
        called_on[request_id] = threading.get_native_id()
        both_in.wait(5)

    callers = [threading.Thread(target=call, args=(f"thread-{n}-0123456789",)) for n in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(10)
    records = [json.loads(line) for line in lines]
    assert {r["request_id"]: r["thread"] for r in records} == called_on
    assert len(set(called_on.values())) == 2 and threading.get_native_id() not in called_on.values()


def _error_after_start(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("the body could not be made")
    except ValueError:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"error"]


def _as_a_server_that_sent_the_headers(status, headers, exc_info=None):
    if exc_info is not None:
        raise exc_info[1].with_traceback(exc_info[2])  # PEP 3333: too late to change the status


@pytest.mark.parametrize(("server_start_response", "status"), [
    (lambda *_: None, 500), (_as_a_server_that_sent_the_headers, 200)])
def test_a_status_replaced_with_exc_info_is_written_once_as_the_server_took_it(server_start_response, status):
    lines: list[str] = []
    traced = HopTrace(_error_after_start, service="raw", server="test", write_line=lines.append)
    raised = False
    try:
        body = traced({"HTTP_X_REQUEST_ID": "exc-info-0123456789", "REQUEST_METHOD": "GET"}, server_start_response)
        list(body)
        body.close()
    except ValueError:
        raised = True
    assert raised == (status == 200)  # where the server refused the change, the app's error goes on up
    [line] = lines
    keys = [key for key, _ in json.loads(line, object_pairs_hook=lambda pairs: pairs)]  # the record's own, as written
    assert keys.count("status") == 1 and dict(json.loads(line))["status"] == status


def _late_error_a_server_takes(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"the status went with these bytes"
    try:
        raise ValueError("after the first chunk")
    except ValueError:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())


def test_a_status_a_server_takes_after_the_body_began_is_not_the_records_the_one_that_went_is():
    lines: list[str] = []
    traced = HopTrace(_late_error_a_server_takes, service="raw", server="test", write_line=lines.append)
    body = traced({"HTTP_X_REQUEST_ID": "late-exc-0123456789", "REQUEST_METHOD": "GET"}, lambda *_: None)
    list(body)  # this server takes the late call without raising, as Granian does
    body.close()
    assert json.loads(lines[0])["status"] == 200
