"""The lab endpoints as a Flask blueprint.

``request.environ`` is the WSGI environ the server built; ``request.stream``
reads from its ``wsgi.input``; returning a generator hands the server an
iterator instead of a finished body.
"""

import time

from flask import Blueprint, Response, jsonify, redirect, request, send_file, url_for

from wsgilab.container import labkit

APP = "flask"

bp = Blueprint("endpoints", __name__)


@bp.get("/")
def hello():
    """The home page, with links that url_for() builds under SCRIPT_NAME."""
    names = ("environ", "stream", "download", "upload", "slow", "redirect_home", "error")
    links = {name.removesuffix("_home"): url_for(f"endpoints.{name}") for name in names}
    links.update(items=url_for("items.list_items"), query=url_for("items.sleep_query"))
    return {"message": "Hello from Flask", "app": APP, "server": labkit.wsgi_server(request.environ), "links": links}


@bp.get("/environ")
def environ():
    """The WSGI environ of this request, as the server handed it to Flask."""
    return jsonify(labkit.describe_environ(request.environ))


@bp.get("/stream")
def stream():
    """A chunked response: the server sends each chunk as the generator yields it.

    ``?bytes=N`` sends N bytes in 64 KiB chunks instead of five short lines.
    """
    if "bytes" in request.args:
        try:
            size = labkit.parse_body_bytes(request.args["bytes"])
        except ValueError as problem:
            return {"error": str(problem)}, 400
        response = Response(labkit.body_chunks(size), mimetype="application/octet-stream")
    else:
        response = Response(labkit.stream_chunks(APP), mimetype="text/plain")
    response.headers["X-Accel-Buffering"] = "no"  # ask nginx to pass chunks on unbuffered
    return response


@bp.get("/download")
def download():
    """``?bytes=N`` bytes of a file, which nginx buffers (unlike /stream's).

    ``send_file`` hands the file to the server's ``wsgi.file_wrapper`` (through
    Werkzeug's ``wrap_file``), so the server may send it with sendfile(2) and
    Python never reads it. ``?wrapper=0`` reads the same file in Python
    instead, as a generator, for comparison.
    """
    try:
        size = labkit.parse_body_bytes(request.args.get("bytes"))
        use_wrapper = labkit.parse_wrapper(request.args.get("wrapper"))
    except ValueError as problem:
        return {"error": str(problem)}, 400
    file = labkit.body_file(size)
    if use_wrapper:
        response = send_file(file, mimetype="application/octet-stream")
    else:
        response = Response(labkit.file_chunks(file), mimetype="application/octet-stream")
    response.content_length = size
    return response


@bp.post("/upload")
def upload():
    """Read the body from wsgi.input in pieces, through Werkzeug's length-limited stream.

    With no CONTENT_LENGTH, Werkzeug reads wsgi.input to its end where the
    server sets wsgi.input_terminated (gunicorn does), and reads nothing where
    it does not: that is a 411, not a 200 for a body never seen.
    """
    if labkit.chunked_without_length(request.environ) and not request.environ.get("wsgi.input_terminated"):
        return labkit.length_required("Werkzeug, on a server that sets no wsgi.input_terminated,"), 411
    return labkit.digest_body(request.stream.read)


@bp.route("/slow", methods=["GET", "POST"])  # POST: a slow write, for the killed-worker lab
def slow():
    """Sleep ms milliseconds in the worker, then answer; 400 for a missing or too large ms."""
    try:
        delay = labkit.parse_delay_ms(request.args.get("ms"))
    except ValueError as problem:
        return {"error": str(problem)}, 400
    time.sleep(delay / 1000)
    return {"slept_ms": delay}


@bp.get("/redirect")
def redirect_home():
    """Redirect to the home page; url_for() includes SCRIPT_NAME in the Location."""
    return redirect(url_for("endpoints.hello"))


@bp.get("/error")
def error():
    """Fail inside the view: Flask answers a plain 500 and logs the traceback."""
    raise RuntimeError("raised on purpose by /error")
