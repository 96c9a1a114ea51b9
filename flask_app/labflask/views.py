"""The lab endpoints as a Flask blueprint.

``request.environ`` is the WSGI environ the server built; ``request.stream``
reads from its ``wsgi.input``; returning a generator hands the server an
iterator instead of a finished body.
"""

import time

from flask import Blueprint, Response, jsonify, redirect, request, url_for

from wsgilab.container import labkit

APP = "flask"

bp = Blueprint("endpoints", __name__)


@bp.get("/")
def hello():
    """The home page, with links that url_for() builds under SCRIPT_NAME."""
    names = ("environ", "stream", "download", "upload", "slow", "redirect_home", "error")
    return {
        "message": "Hello from Flask",
        "app": APP,
        "server": labkit.wsgi_server(request.environ),
        "links": {name.removesuffix("_home"): url_for(f"endpoints.{name}") for name in names},
    }


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
    """``?bytes=N`` bytes from a generator, which nginx buffers (unlike /stream's)."""
    try:
        size = labkit.parse_body_bytes(request.args.get("bytes"))
    except ValueError as problem:
        return {"error": str(problem)}, 400
    response = Response(labkit.body_chunks(size), mimetype="application/octet-stream")
    response.headers["Content-Length"] = str(size)
    return response


@bp.post("/upload")
def upload():
    """Read the body from wsgi.input in pieces, through Werkzeug's length-limited stream."""
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
