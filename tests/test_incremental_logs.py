"""A compose project's logs read whole once, then from each container's tail (wsgilab.hoptrace.incremental_logs):
the same lines `docker logs` prints, as fresh as it.

The stack test runs on the compose tier; the frame parsing needs no stack.
"""

import io
import struct
import time
import uuid
from collections import Counter

from lab_http import get
from lab_stacks import APPS

from wsgilab.hoptrace import docker_api, incremental_logs
from wsgilab.hoptrace.incremental_logs import IncrementalLogs
from wsgilab.hoptrace.sources import _docker_logs_lines

ONLY_TIERS = ("compose",)


def _frame(payload: bytes, stream: int = 1) -> bytes:
    return struct.pack(">BxxxI", stream, len(payload)) + payload


def test_a_line_the_engine_split_into_16_kib_messages_comes_back_whole():
    # As the engine sends a 40 000-byte line and a short one: each message its own frame, each with the timestamp.
    stamp = b"2026-12-04T00:39:43.990862340Z "
    long_line = b"A" * 40_000 + b"\n"
    parts = [long_line[:16_384], long_line[16_384:32_768], long_line[32_768:]]
    stream = b"".join(_frame(stamp + part) for part in parts) + _frame(b"2026-12-04T00:39:43.991150136Z short\n", 2)
    lines = list(docker_api._stamped_lines(io.BytesIO(stream)))
    assert [(stamp, len(line)) for stamp, line in lines] == [("2026-12-04T00:39:43.990862340Z", 40_001),
                                                             ("2026-12-04T00:39:43.991150136Z", 6)]


def test_a_line_stamped_before_the_last_one_read_but_written_after_it_is_kept(monkeypatch):
    # The engine stamps stdout and stderr lines as each stream's copier reads them, so in the log a line can
    # follow one stamped after it (a container writing to both by turns: 99 of 60 000 lines). A read that ends
    # between the two must not lose the first: what follows the last line read, in the log's order, is new.
    log = [("2026-12-05T10:00:00.000000300Z", "[error] client intended to send too large body\n"),
           ("2026-12-05T10:00:00.000000200Z", '{"hop":"nginx","status":413}\n'),
           ("2026-12-05T10:00:00.000000400Z", "next\n")]
    written = 1
    monkeypatch.setattr(incremental_logs, "project_containers", lambda project: [("c1", "nginx", "running")])
    monkeypatch.setattr(incremental_logs, "container_stamped_lines",
                        lambda container, tail=None: iter(log[:written][-tail:] if tail else log[:written]))
    logs = IncrementalLogs("p")
    assert logs.lines() == ["[error] client intended to send too large body"]
    written = 3
    every_line = ["[error] client intended to send too large body", '{"hop":"nginx","status":413}', "next"]
    assert logs.lines() == every_line
    assert logs.lines() == every_line  # once each


def test_a_container_that_stopped_since_the_last_read_has_its_last_lines_read_once(monkeypatch):
    # A replica replaced in a rolling update, a worker restarted by a lab: what it wrote before it stopped counts.
    log = [(f"2026-12-05T10:00:00.{n:09d}Z", f"line {n}\n") for n in range(3)]
    written, state, reads, failing = 1, "running", [], False

    def stamped(container, tail=None):
        reads.append(tail)
        if failing:
            raise docker_api.DockerApiError("the engine did not answer")
        return iter(log[:written][-tail:] if tail else log[:written])

    monkeypatch.setattr(incremental_logs, "project_containers", lambda project: [("c1", "raw", state)])
    monkeypatch.setattr(incremental_logs, "container_stamped_lines", stamped)
    logs = IncrementalLogs("p")
    assert logs.lines() == ["line 0"]
    written, state, failing = 3, "exited", True
    assert logs.lines() == ["line 0"]  # the engine did not answer: the container is not done with
    failing = False
    assert logs.lines() == ["line 0", "line 1", "line 2"]
    assert logs.lines() == ["line 0", "line 1", "line 2"] and len(reads) == 3  # nothing more asked of it
    state = "running"  # restarted
    assert logs.lines() == ["line 0", "line 1", "line 2"] and len(reads) == 4


def test_a_tail_that_does_not_reach_the_last_line_read_is_asked_for_again_longer(monkeypatch):
    log = [(f"2026-12-05T10:00:00.{n:09d}Z", f"line {n}\n") for n in range(12)]
    written, tails = 2, []

    def stamped(container, tail=None):
        tails.append(tail)
        return iter(log[:written][-tail:] if tail else log[:written])

    monkeypatch.setattr(incremental_logs, "FIRST_TAIL", 2)
    monkeypatch.setattr(incremental_logs, "project_containers", lambda project: [("c1", "raw", "running")])
    monkeypatch.setattr(incremental_logs, "container_stamped_lines", stamped)
    logs = IncrementalLogs("p")
    logs.lines()
    written = 12
    assert logs.lines() == [f"line {n}" for n in range(12)]
    assert tails == [None, 2, 8, 32]  # 2 and 8 lines end after the last line read; 32 holds the whole log


def test_a_read_holds_every_line_docker_logs_printed_before_it_and_new_ones_after_a_short_tail(tier_stack,
                                                                                                   monkeypatch):
    tier_stack.use(tier_stack.servers or {app: "gunicorn" for app in APPS})
    logs = IncrementalLogs(tier_stack.project)
    before = logs.lines()
    # A tail of 2 lines reaches back to the last line read only after growing: the read must grow it.
    monkeypatch.setattr(incremental_logs, "FIRST_TAIL", 2)
    request_ids = [f"incremental-{uuid.uuid4().hex[:12]}" for _ in range(5)]
    for request_id in request_ids:
        assert get(tier_stack.port, "/raw/", headers={"X-Request-ID": request_id}).status == 200
    printed = Counter()
    for _ in range(50):  # nginx and the app write their lines just after the response
        printed = Counter(_docker_logs_lines(tier_stack.project, ()))
        if all(sum(count for line, count in printed.items() if request_id in line) >= 2
               for request_id in request_ids):
            break
        time.sleep(0.1)
    after = Counter(logs.lines())  # read once, right after: as fresh as docker logs was
    assert not printed - after, f"lines docker logs printed that the read lacks: {list(printed - after)[:3]}"
    assert sum(after.values()) > len(before) and all(after[line] == 1 for line in after if "incremental-" in line)
