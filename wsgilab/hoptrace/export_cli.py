"""``hoptrace export``: write traces as OTLP/JSON or Chrome trace events, or push them to an OTLP receiver.

    hoptrace export --id 3f9c... --format chrome > trace.json   # open in ui.perfetto.dev
    hoptrace export --format otlp                               # every request in the logs, one document
    hoptrace export --follow                                    # one OTLP/JSON line per request, live
    hoptrace export --otlp-endpoint http://127.0.0.1:4318/v1/traces

Pushing: the spans go to the receiver in batches (``BATCH_REQUESTS``
requests a POST, OTLP/JSON, ``Content-Type: application/json``; with
``--follow``, also whatever has waited ``PUSH_WITHIN_S``), each batch
retried with a growing pause when the receiver is down or answers 429 or
5xx, as the OTLP/HTTP spec asks. A batch that still fails after the last
try is reported on stderr with how many spans it held, the command goes on
with the next and exits 1 at the end: nothing is dropped without a word.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from wsgilab.hoptrace.export import to_chrome, to_otlp
from wsgilab.hoptrace.follow import follow
from wsgilab.hoptrace.records import scan
from wsgilab.hoptrace.request_groups import requests_of
from wsgilab.hoptrace.sources import command_lines
from wsgilab.hoptrace.spans import Span, spans_of

#: Requests per POST to an OTLP receiver.
BATCH_REQUESTS = 100
#: With --follow, the longest a request waits for its batch to fill: a live
#: view (Jaeger's) shows a request a second after it completes, not after 99 more.
PUSH_WITHIN_S = 1.0
#: Pauses between tries of one batch, in seconds: 4 tries in all.
RETRY_PAUSES_S = (0.5, 1.0, 2.0)
#: How long one POST may take.
POST_TIMEOUT_S = 10.0


class Pusher:
    """Sends batches of spans to an OTLP/HTTP receiver, and counts what it could not deliver."""

    def __init__(self, endpoint: str) -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise SystemExit(f"hoptrace export: --otlp-endpoint must be an http:// or https:// URL, not {endpoint!r}")
        self.endpoint = endpoint
        self.sent = self.lost = 0

    def push(self, spans: list[Span]) -> None:
        if not spans:
            return
        body = json.dumps(to_otlp(spans), separators=(",", ":")).encode()
        problem = ""
        for pause in (*RETRY_PAUSES_S, None):
            request = urllib.request.Request(self.endpoint, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=POST_TIMEOUT_S) as reply:
                    reply.read()
                self.sent += len(spans)
                return
            except urllib.error.HTTPError as error:
                problem = f"the receiver answered {error.code} {error.reason}"
                if error.code != 429 and error.code < 500:
                    break  # the receiver refuses this batch: trying again would not help
            except (urllib.error.URLError, OSError) as error:
                problem = f"cannot reach it: {getattr(error, 'reason', error)}"
            if pause is not None:
                time.sleep(pause)
        self.lost += len(spans)
        print(f"hoptrace export: {len(spans)} span(s) not delivered to {self.endpoint}: {problem}", file=sys.stderr)


def _document(spans: list[Span], form: str) -> dict[str, Any]:
    return to_otlp(spans) if form == "otlp" else to_chrome(spans)


def export(args: argparse.Namespace) -> int:
    """Run ``hoptrace export`` with parsed arguments; the exit status."""
    pusher = Pusher(args.otlp_endpoint) if args.otlp_endpoint else None
    if args.follow:
        batch: list[list[Span]] = []  # each request's spans, until BATCH_REQUESTS of them go in one POST
        batch_opened = [0.0]  # when the batch's first request came

        def emit(request_id: str, records: list[dict[str, Any]]) -> None:
            if args.request_id and args.request_id not in (request_id, *(r.get("trace_id") for r in records)):
                return
            spans = spans_of(records)
            if pusher is None:
                print(json.dumps(_document(spans, args.format), separators=(",", ":")), flush=True)
                return
            if not batch:
                batch_opened[0] = time.monotonic()
            batch.append(spans)
            if len(batch) >= BATCH_REQUESTS:
                push_batch()

        def push_batch() -> None:
            pusher.push([span for request in batch for span in request])
            batch.clear()

        def tick(now: float) -> None:
            if batch and now - batch_opened[0] >= PUSH_WITHIN_S:
                push_batch()

        try:
            follow(command_lines(args, follow=True), 0.5, emit, tick if pusher is not None else None)
        except KeyboardInterrupt:
            pass
        if pusher is not None:
            push_batch()
    else:
        found = scan(command_lines(args), args.request_id)
        requests = requests_of(found.records)
        if not requests:
            print(f"hoptrace export: no request {'with id ' + args.request_id + ' ' if args.request_id else ''}"
                  "in the logs read", file=sys.stderr)
            return 1
        if pusher is None:
            print(json.dumps(_document([s for records in requests for s in spans_of(records)], args.format)))
        else:
            for start in range(0, len(requests), BATCH_REQUESTS):
                pusher.push([s for records in requests[start:start + BATCH_REQUESTS] for s in spans_of(records)])
    if pusher is not None:
        print(f"hoptrace export: {pusher.sent} span(s) delivered to {pusher.endpoint}"
              + (f", {pusher.lost} not delivered" if pusher.lost else ""), file=sys.stderr)
        return 1 if pusher.lost else 0
    return 0
