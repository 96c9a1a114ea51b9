"""A wsgi record names the thread that called the app, by the kernel's id for it (as ``ps -L`` shows it).

The queueing lab reads it to tell how many of a Granian worker's threads ran a
burst: Granian starts them one at a time, so a worker can run a burst on fewer
than it was given (docs/findings.md).
"""

import json
import threading

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
