"""``hoptrace follow``: group records by request as they stream in, and let each go once complete."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from wsgilab.hoptrace.records import parse_line
from wsgilab.hoptrace.request_groups import requests_of, trace_of
from wsgilab.trace_context import flags_sampled
from wsgilab.trace_format import INTERFACE_HOPS, SERVER_HOPS


class Follower:
    """Gathers records by request id and lets a request go once its records stop coming.

    A request's hops each write their line when they are done with it, within
    moments of each other, so a request is complete once ``settle_s`` has
    passed with no new record for it and the records that come last are among
    them: nginx's (after the response is sent) and, for a request an app
    served, its server's (after the body's close()). A request nginx never logs (a
    healthcheck that went straight to the app) goes after ``4 * settle_s``.
    Records are gathered by id, and each request under it (one per trace:
    ``request_groups.requests_of``) is judged and let go on its own, so two
    requests that carried the same id at once go each when it is complete.
    """

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        #: Per request id, its records so far, each with when it came.
        self.pending: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        self.skipped = 0

    def feed(self, line: str, now: float) -> None:
        """Take one log line."""
        record = parse_line(line)
        if record is None:
            self.skipped += 1
            return
        request_id = record.get("request_id")
        if not isinstance(request_id, str) or request_id == "-":
            return  # a hop's own chatter (boot, worker start), or no id to group by
        self.pending.setdefault(request_id, []).append((now, record))

    def due(self, now: float, everything: bool = False) -> list[tuple[str, list[dict[str, Any]]]]:
        """The requests that are complete at ``now`` (all of them if ``everything``), oldest first.

        One whose nginx record says an app answered it waits longer for the app's records
        (``APP_PATIENCE`` x ``settle_s``): a restarted app's container is found and read a moment after
        nginx's line about it (hoptrace.docker_api looks for new containers every RELIST_S), and a request
        let go without them would reach an exporter in two parts.
        """
        ready = []
        for request_id, arrived in list(self.pending.items()):
            came = {id(record): when for when, record in arrived}
            records = [record for _, record in arrived]
            # One trace under the id (the rule): one request, without splitting it.
            one = len({trace_of(record) for record in records} - {None}) < 2
            for request in [records] if one else requests_of(records):
                quiet = now - max(came[id(record)] for record in request)
                limit = (APP_PATIENCE if _awaits_app(request) else 4) * self.settle_s
                if everything or (quiet >= self.settle_s and _all_in(request)) or quiet >= limit:
                    ready.append((request_id, request))
                    gone = {id(record) for record in request}
                    arrived = [(when, record) for when, record in arrived if id(record) not in gone]
            if arrived:
                self.pending[request_id] = arrived
            else:
                del self.pending[request_id]
        return ready


#: How many times ``settle_s`` a request nginx says an app answered may wait for that app's records.
APP_PATIENCE = 12


def _awaits_app(records: list[dict[str, Any]]) -> bool:
    """Whether nginx's record says an app answered the request (an upstream status of the app's, not
    nginx's own 502 or 504) and no record of the app's WSGI layer has come yet."""
    # nginx logs the status of each app it tried ("502, 200" after a retry): the last one answered.
    nginx = next((r for r in records if r.get("hop") == "nginx"), {})
    status = str(nginx.get("upstream_status", "")).split(",")[-1]
    answered = status.strip().isdigit() and status.strip() not in ("502", "504")
    # A trace that is not sampled gets no record of the app's: nothing to wait for.
    return answered and flags_sampled(nginx.get("trace_flags")) and not any(
        r.get("hop") in INTERFACE_HOPS for r in records)


def _all_in(records: list[dict[str, Any]]) -> bool:
    """Whether the hops that write last are in: nginx's record, the app's where nginx says one answered,
    and, once the app's is in, its server's.

    The server writes its line after the body's close() (gunicorn's
    post_request, uWSGI's request line), so on a busy machine it can come a
    moment after nginx's.
    """
    hops = {r.get("hop") for r in records}
    servers = {r.get("server") for r in records if r.get("hop") in INTERFACE_HOPS} & set(SERVER_HOPS)
    return "nginx" in hops and servers <= hops and not _awaits_app(records)


def follow(lines: Iterable[str], settle_s: float, emit: Callable[[str, list[dict[str, Any]]], None],
           tick: Callable[[float], None] | None = None) -> int:
    """Feed ``lines`` to a Follower as they arrive, emitting each request once complete.

    The lines are read on a thread so that a quiet input does not keep
    finished requests waiting; if reading fails, the error is raised here
    once what was read has been emitted. ``tick``, if given, is called with the
    monotonic time at least every ``settle_s / 4`` (what is due by time, not
    by input). Returns how many lines held no hop record.
    """
    arrived: queue.Queue[str | None] = queue.Queue(maxsize=10_000)
    failed: list[Exception] = []  # why the input ended, if it broke: raised here, not lost with the thread

    def read() -> None:
        try:
            for line in lines:
                arrived.put(line)
        except Exception as error:  # noqa: BLE001 (re-raised below, in the caller's thread)
            failed.append(error)
        finally:
            arrived.put(None)

    threading.Thread(target=read, daemon=True, name="hoptrace-reader").start()
    follower = Follower(settle_s)
    while True:
        try:
            line = arrived.get(timeout=settle_s / 4)
        except queue.Empty:
            line = ""
        if line is None:
            break
        now = time.monotonic()
        if line:
            follower.feed(line, now)
        for request_id, records in follower.due(now):
            emit(request_id, records)
        if tick is not None:
            tick(now)
    for request_id, records in follower.due(time.monotonic(), everything=True):
        emit(request_id, records)
    if failed:
        raise failed[0]
    return follower.skipped
