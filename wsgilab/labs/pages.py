"""The labs' pages in docs/labs/: one per lab, and an index by what the client sees.

    python -m wsgilab.labs.pages docs/labs

Each page is made from the lab's own module (``TITLE``, ``EXPLANATION``,
``OUTCOMES``) and, where one was recorded, a real run's output
(``docs/labs/runs/NAME.txt``, written by ``hoptrace lab NAME``). The index
files every outcome under the status the client got, so "I got a 504" is
one click from the labs that explain a 504, after a short learning path for
someone new to WSGI. tests/test_docs.py fails when a page is out of date.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

from wsgilab.labs import LABS, SERVER_NAMES, named, servers_of
from wsgilab.labs.kit import Outcome

#: The index's sections, in order: what the client saw, in words.
STATUSES = {
    "400": "400 Bad Request",
    "403": "403 Forbidden",
    "408": "408 Request Timeout",
    "413": "413 Content Too Large",
    "414": "414 URI Too Long",
    "421": "421 Misdirected Request",
    "500": "500 Internal Server Error",
    "501": "501 Not Implemented",
    "502": "502 Bad Gateway",
    "503": "503 Service Unavailable",
    "504": "504 Gateway Timeout",
    "hang": "A hang (why there is none)",
    "truncated body": "A truncated body",
    "slow": "200, but slow",
    "200": "200, where you might expect a failure",
    "other": "No status: what the stack exposes, and its health",
}

#: The index's learning path, for a Python web developer new to WSGI: (lab, what it teaches), in order.
LEARNING_PATH = (
    ("queueing", "what a worker is: a sync worker runs one request at a time, and the requests it cannot take "
                 "yet wait in the kernel's queue before any of your code runs, which the trace shows as its "
                 "`queue` segment; threads change that."),
    ("worker-timeout", "what the server does to a request that runs too long: it ends the worker, and the "
                       "client gets a 500 on gunicorn (its worker answers on its way out) or a 502 on uWSGI "
                       "(the worker is killed, and nginx answers), unless nginx's own read timeout runs out "
                       "first: then it is nginx's 504."),
    ("slow-readers", "what nginx in front does for a sync worker: it buffers a big response so the worker is "
                     "free within a second or two, while a response that opts out (`X-Accel-Buffering: no`, "
                     "as a streamed one does) holds its worker until the client has read it."),
)

#: The index's wording of an outcome in one section, where the lab's own "failure: client_sees" would not
#: read as a whole sentence there: an outcome filed under several statuses gets the words for each one,
#: and one that continues the outcome before it ("... and its health") is named in full.
#: (lab, the start of the outcome's failure, section) -> the entry, or None to leave it out of that section.
INDEX_WORDING: dict[tuple[str, str, str], str | None] = {
    ("malformed-requests", "malformed or smuggling request", "400"):
        "a malformed or smuggling request (Content-Length with Transfer-Encoding, two lengths, `5, 5`, `+5`, a "
        "space before Transfer-Encoding's colon, bad or huge chunk sizes, a bare LF in a chunk extension, "
        "obs-fold, NUL, a space in a header name): 400 from nginx; the request hidden in its body reaches nothing",
    ("malformed-requests", "malformed or smuggling request", "501"):
        "a smuggling request with a transfer coding nginx does not know (`chunked, gzip`, or an obfuscated "
        "`xchunked`): 501 from nginx; the request hidden in its body reaches nothing",
    ("worker-timeout", "a view slower than the worker's limit", "500"):
        "a view slower than the worker's limit, on gunicorn: 500, written by the worker as SystemExit unwinds "
        "the view (on uWSGI the same view is a 502)",
    ("worker-timeout", "a view slower than the worker's limit", "502"):
        "a view slower than the worker's limit, on uWSGI: 502 from nginx, as harakiri SIGKILLs the worker before "
        "it answers (on gunicorn the same view is a 500)",
    ("slow-query", "a query slower than the worker's limit", "500"):
        "a query slower than the worker's limit, with no `statement_timeout`, on gunicorn: 500, and psycopg "
        "cancels the query as SystemExit unwinds the worker (on uWSGI it is a 502, and the query runs on)",
    ("slow-query", "a query slower than the worker's limit", "502"):
        "a query slower than the worker's limit, with no `statement_timeout`, on uWSGI: 502, and the query runs "
        "on in the database to its end for a client that is gone (on gunicorn it is a 500, the query cancelled)",
    ("import-failure", "the app fails to import", "502"):
        "an app that fails to import: 502 from nginx for as long as it is broken, at once while Docker's DNS has "
        "no address for it, a second or so later when its server resets a connection as it gives up (a request "
        "in the second after a crash waits first: see 504); the other apps 200",
    ("import-failure", "the app fails to import", "504"):
        "an app that fails to import, and a request in the second after its container died, while nginx still "
        "holds the dead address (Docker's DNS answers are kept 1 s): the connect waits, and ends as a 502 if the "
        "kernel gives up on the address first (about 4 s seen), else as a 504 at `NGINX_CONNECT_TIMEOUT` (5 s by "
        "default); never longer",
    ("import-failure", "... and its health", "other"):
        "the health of an app that fails to import: never \"healthy\": \"starting\" after each restart, or "
        "\"unhealthy\"; `docker compose ps` says Restarting",
    ("full-listen-queue", "more slow requests than the worker", "504"):
        "more slow requests than the worker and its listen queue hold (1 worker, backlog 1, 8 requests): 504 for "
        "the 5 that do not fit, at nginx's connect timeout; the 3 that fit get 200, each in its turn",
    ("full-listen-queue", "more slow requests than the worker", "hang"):
        "more slow requests than the worker and its listen queue hold: none hangs; the kernel drops the "
        "connection attempts that do not fit, and nginx gives up on each at its connect timeout with a 504",
    # Its 200s are those of the requests that fitted, as expected; the 504 entry names them.
    ("full-listen-queue", "more slow requests than the worker", "200"): None,
    ("slow-clients", "hundreds of clients trickling", "408"):
        "a client that trickles its headers or body for longer than 60 s: 408 from nginx, which held it all "
        "along; no app ever sees it",
    ("slow-clients", "hundreds of clients trickling", "slow"):
        "hundreds of clients trickling their headers or body: slow only for themselves; nginx holds them all and "
        "no app sees them, so other requests keep their latency and queue time",
    ("slow-clients", "hundreds of clients trickling", "hang"):
        "hundreds of clients trickling their headers or body: nothing hangs; nginx holds them without a worker, "
        "other requests are served as usual, and each trickler gets a 408 after 60 s",
    ("slow-readers", "... the same from `/stream", "200"):
        "clients that wait 10 s before reading a 64 MiB response from `/stream?bytes=N`, which sends "
        "`X-Accel-Buffering: no` (`proxy_buffering off` for that response): 200, at their pace, but the worker "
        "stays in its write until the client has read",
    ("slow-readers", "... the same from `/stream", "truncated body"):
        "a response sent unbuffered (`X-Accel-Buffering: no`, as `/stream` does) to a client that stops reading "
        "for longer than the worker's limit: the status was 200, but the worker gives up on its write after "
        "gunicorn `timeout` or uWSGI `socket-timeout` (`WSGI_TIMEOUT`, 30 s), and the client gets part of the "
        "body and no error (uWSGI's default 4 s did that to this lab's stream)",
    ("replica-down", "one of three replicas killed", "502"):
        "one of three replicas killed under load: 502 for a POST the killed replica held, never sent to another; "
        "every GET 200",
    ("replica-down", "one of three replicas killed", "200"):
        "one of three replicas killed under load: 200 for every GET, some after nginx tried them again on "
        "another replica (a POST the killed replica held: 502)",
}

#: A line or two above a section's entries, where another page answers the section's question first.
SECTION_LEADS = {
    "502": ("Which of these is yours: [a 502, by nginx's error line](../502.md) tells them apart from the trace.",
            ""),
}

GENERATED = ("<!-- Generated by `python -m wsgilab.labs.pages docs/labs` from wsgilab/labs/; "
             "tests/test_docs.py fails when it is out of date. -->")


def _module(name: str):
    return importlib.import_module(LABS[name])


def _outcome(outcome: Outcome, servers: tuple[str, ...]) -> list[str]:
    return [f"### {outcome.failure}", "",
            f"- **The client sees:** {outcome.client_sees}",
            f"- **The hop that acts:** {outcome.hop}",
            *(f"- **Decided by, for an app on {SERVER_NAMES[server]}:** {getattr(outcome, server)}"
              for server in servers), ""]


def _without_why(report: str) -> str:
    """A printed report with its explanation (``why:`` up to ``result:``) elided."""
    head, found, rest = report.partition("\nwhy:\n")
    if not found:
        return report
    _, result, tail = rest.partition("\nresult: ")
    return f"{head}\nwhy:\n  (the explanation above)\n{result}{tail}"


_SERVED = re.compile(r"/(django|flask|raw)/\S* on (gunicorn|uwsgi|granian|waitress|uvicorn)\b")


def _servers_in(run: str) -> str:
    """Which server each app ran on in a recorded run, as its checks name them: " (Django on uWSGI, ...)"."""
    servers: dict[str, str] = {}
    for app, server in _SERVED.findall(run):
        servers.setdefault(app, server)
    if set(servers) != {"django", "flask", "raw"}:
        return ""  # a run that does not name each app's server
    names = {"django": "Django", "flask": "Flask", "raw": "the raw app"}
    changed = " ".join(f"{app.upper()}_SERVER={server}" for app, server in servers.items() if server != "gunicorn")
    up = f": `{changed} docker compose up -d`" if changed else ""  # how to start the same stack
    return " (" + ", ".join(f"{names[app]} on {SERVER_NAMES[servers[app]]}" for app in names) + up + ")"


def lab_page(name: str, runs: Path | None = None) -> str:
    """docs/labs/NAME.md: what the lab does, what each failure looks like, why, and a real run."""
    module = _module(name)
    swarm_only = getattr(module, "STACKS", ("compose",)) == ("swarm",)
    command = f"hoptrace lab {name} --stack wsgilab" if swarm_only else f"hoptrace lab {name}"
    lines = [f"# {module.TITLE}", "", GENERATED, "",
             "```", f"{command}{' ' * max(2, len(name) + 27 - len(command))}# run it against the stack on :8080",
             f"hoptrace lab {name} --explain    # only the explanation below, no stack needed", "```", "",
             f"It runs with its apps on {named(servers_of(name)).replace(' or ', ' and ')}; with an app on another "
             "server it says so and stops.", "",
             "## What the client sees", ""]
    for outcome in module.OUTCOMES:
        lines += _outcome(outcome, servers_of(name))
    lines += ["## Why", "", module.EXPLANATION.strip(), ""]
    run = runs / f"{name}.txt" if runs else None
    if run is not None and run.exists():
        lines += ["## A real run", "",
                  (f"`{command}` on the stack `FLASK_REPLICAS=3 scripts/swarm up` deploys (every app on "
                   "gunicorn)" if swarm_only else
                   f"`hoptrace lab {name}` on the compose stack{_servers_in(run.read_text())}")
                  + ", as printed but for its `why:` part, which is the section above:", "",
                  "```", f"$ {command}", _without_why(run.read_text()).rstrip(), "```", ""]
    asgi_run = runs / f"{name}.uvicorn.txt" if runs else None
    if asgi_run is not None and asgi_run.exists():  # the same lab with the raw app's ASGI side on uvicorn
        lines += ["And with the ASGI side on uvicorn (docs/asgi.md):", "",
                  "```", f"$ {getattr(module, 'ASGI_RUN', 'RAW_SERVER=uvicorn docker compose up -d')}", f"$ {command}",
                  _without_why(asgi_run.read_text()).rstrip(), "```", ""]
    lines += ["[All labs, by what the client sees](README.md)"]
    return "\n".join(lines) + "\n"


def _index_entries() -> dict[str, list[str]]:
    """Each section's entries, "what happened: what the client saw ([lab](lab.md))", worded for that section."""
    unused = set(INDEX_WORDING)
    sections: dict[str, list[str]] = {key: [] for key in STATUSES}
    for name in LABS:
        before = None
        for outcome in _module(name).OUTCOMES:
            failure = outcome.failure
            if failure.startswith("... ") and before is not None:
                failure = f"{before.failure}, {failure[4:]}"
            for key in outcome.statuses:
                worded = [k for k in INDEX_WORDING if k[0] == name and k[2] == key and outcome.failure.startswith(k[1])]
                unused -= set(worded)
                entry = INDEX_WORDING[worded[0]] if worded else f"{failure}: {outcome.client_sees}"
                if entry is not None and key in sections:
                    sections[key].append(f"- {entry} ([{name}]({name}.md))")
            before = outcome
    if unused:
        raise ValueError(f"INDEX_WORDING names outcomes the labs no longer file so: {sorted(unused)}")
    return sections


def index_page() -> str:
    """docs/labs/README.md: a learning path, then every outcome of every lab, filed under what the client saw."""
    lines = ["# Failure labs, by what the client sees", "", GENERATED, "",
             "Each lab triggers one failure on purpose against the running stack, checks what every hop did,",
             "prints the traces of its requests, and explains which hop acted and which setting decides it.",
             "It exits non-zero if a check fails. The tests run the very same labs on gunicorn and uWSGI, and "
             "those that name Granian or Waitress on them too.", "",
             "```", "hoptrace lab list                      # what there is",
             "hoptrace lab host-and-proxy-headers    # one lab, against the stack on :8080 (--port to change)",
             "hoptrace lab all --json                # every lab, as JSON",
             "hoptrace lab slow-readers --explain    # what a lab shows, without a stack", "```", "",
             "Some labs change the stack while they run (shorter timeouts, fewer workers, a broken app) and put",
             "back the settings it was running with, read off its containers, whether they came from `.env` or",
             "the shell. The labs read every request's trace: on a stack that records only a share of them",
             "(`WSGILAB_TRACE_SAMPLE` below 100) they refuse to run and say so.", "",
             "## Where to start (a learning path)", "",
             "New to WSGI? Run these three first, in this order; each builds on the one before "
             "(`--explain` prints a lab's lesson without a stack):", ""]
    for step, (name, teaches) in enumerate(LEARNING_PATH, 1):
        lines.append(f"{step}. [{name}]({name}.md): {teaches}")
    lines += ["", "Then [slow-clients](slow-clients.md) shows the same buffering on the way in, and the sections "
              "below file every lab by the status you hold.", "", "## The labs", ""]
    for name in LABS:
        lines.append(f"- [{name}]({name}.md): {_module(name).TITLE}")
    for key, entries in _index_entries().items():
        if entries:
            lines += ["", f"## {STATUSES[key]}", "", *SECTION_LEADS.get(key, ()), *entries]
    return "\n".join(lines) + "\n"


def pages(runs: Path | None = None) -> dict[str, str]:
    """Every page, by file name."""
    return {"README.md": index_page(), **{f"{name}.md": lab_page(name, runs) for name in LABS}}


def main(argv: list[str]) -> int:
    """Write every page into the folder ``argv[0]`` (docs/labs)."""
    if len(argv) != 1:
        print("usage: python -m wsgilab.labs.pages docs/labs", file=sys.stderr)
        return 64
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, text in pages(folder / "runs").items():
        (folder / file_name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
