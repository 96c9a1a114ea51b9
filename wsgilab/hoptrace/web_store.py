"""What ``hoptrace web`` holds: the requests read so far, each as its list's line and its records.

A request is named by its id and its trace id: a client may send an id
again (a tour step run twice), and each request that carried it is listed
and drawn apart (``request_groups``). The newest KEEP_REQUESTS are kept.
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from typing import Any

from wsgilab.hoptrace.records import events_of
from wsgilab.hoptrace.request_groups import trace_of_request
from wsgilab.hoptrace.waterfall import final_answer, heading, serving_event

#: The requests kept in memory, newest last; older ones are let go.
KEEP_REQUESTS = 5000
#: A request as the page names it: (its request id, its trace id or "" where its records carry none).
Key = tuple[str, str]


def summary(key: Key, events: list[dict[str, Any]]) -> dict[str, Any]:
    """One line of the page's list: what ``hoptrace show``'s heading says, as fields."""
    request_id, trace_id = key
    received = next((e for e in events if e["event"] == "request_received"), {})
    sent = final_answer(events)
    served = serving_event(events)
    uri = str(received.get("uri") or "")
    return {
        "request_id": request_id,
        "trace_id": trace_id,
        "ts_us": events[0]["ts_us"] if events else 0,
        "method": received.get("method") or "",
        "uri": uri,
        "path": uri.split("?", 1)[0],
        "status": sent.get("status"),
        "duration_ms": round((events[-1]["ts_us"] - events[0]["ts_us"]) / 1000, 3) if events else 0.0,
        "app": served.get("service") or "",
        "server": served.get("server") or "",
        "replica": served.get("replica") or "",
        "heading": heading(request_id, events),
    }


class Store:
    """The requests read so far (the newest KEEP_REQUESTS), and who is waiting to hear of new ones."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: OrderedDict[Key, list[dict[str, Any]]] = OrderedDict()
        self.summaries: dict[Key, dict[str, Any]] = {}
        self.newest: dict[str, Key] = {}  # the newest request that carried each id
        self.listeners: list[queue.Queue[dict[str, Any]]] = []

    def add(self, request_id: str, records: list[dict[str, Any]]) -> None:
        """Take one complete request (``follow``'s emit). Records of a request already taken (an app's, read late)
        join it: by their trace id, or, with none, the newest request that carried the id."""
        with self.lock:
            trace_id = trace_of_request(records)
            key = (request_id, trace_id) if trace_id else self.newest.get(request_id, (request_id, ""))
            known = self.requests.pop(key, None)
            if known is None:
                self.newest[request_id] = key
            records = self.requests[key] = (known or []) + records
            shown = self.summaries[key] = summary(key, events_of(records))
            while len(self.requests) > KEEP_REQUESTS:
                gone, _ = self.requests.popitem(last=False)
                self.summaries.pop(gone, None)
                if self.newest.get(gone[0]) == gone:
                    del self.newest[gone[0]]
            listeners = list(self.listeners)
        for listener in listeners:
            listener.put(shown)

    def listen(self) -> queue.Queue[dict[str, Any]]:
        listener: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1000)
        with self.lock:
            self.listeners.append(listener)
        return listener

    def forget(self, listener: queue.Queue[dict[str, Any]]) -> None:
        with self.lock:
            self.listeners.remove(listener)

    def newest_first(self) -> list[dict[str, Any]]:
        """The summaries by when each request came (the logs of several containers arrive in any order)."""
        with self.lock:
            return sorted(self.summaries.values(), key=lambda shown: shown["ts_us"], reverse=True)

    def records(self, request_id: str, trace_id: str | None = None) -> list[dict[str, Any]] | None:
        """The records of the request that carried ``request_id`` with ``trace_id`` (without one: the newest)."""
        with self.lock:
            key = (request_id, trace_id) if trace_id is not None else self.newest.get(request_id)
            found = self.requests.get(key) if key is not None else None
            return list(found) if found is not None else None


