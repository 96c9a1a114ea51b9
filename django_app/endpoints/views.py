"""The lab endpoints as Django views.

``request.META`` *is* the WSGI environ the server built; ``request.read()``
reads from its ``wsgi.input``; a ``StreamingHttpResponse`` hands the server an
iterator instead of a finished body.
"""

import time

from django.http import FileResponse, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from wsgilab.container import labkit

APP = "django"


@require_safe
def hello(request):
    """The home page, with links that reverse() builds under SCRIPT_NAME."""
    names = ("environ", "stream", "download", "upload", "slow", "redirect", "error", "items", "query")
    return JsonResponse(
        {
            "message": "Hello from Django",
            "app": APP,
            "server": labkit.wsgi_server(request.META),
            "links": {name: reverse(name) for name in names},
        }
    )


@require_safe
def show_environ(request):
    """The WSGI environ of this request, as the server handed it to Django."""
    return JsonResponse(labkit.describe_environ(request.META), json_dumps_params={"indent": 2})


@require_safe
def stream(request):
    """A chunked response: the server sends each chunk as the generator yields it.

    ``?bytes=N`` sends N bytes in 64 KiB chunks instead of five short lines.
    """
    if "bytes" in request.GET:
        try:
            size = labkit.parse_body_bytes(request.GET["bytes"])
        except ValueError as problem:
            return JsonResponse({"error": str(problem)}, status=400)
        response = StreamingHttpResponse(labkit.body_chunks(size), content_type="application/octet-stream")
    else:
        response = StreamingHttpResponse(labkit.stream_chunks(APP), content_type="text/plain; charset=utf-8")
    response["X-Accel-Buffering"] = "no"  # ask nginx to pass chunks on unbuffered
    return response


@require_safe
def download(request):
    """``?bytes=N`` bytes of a file, which nginx buffers (unlike /stream's).

    A FileResponse: Django's WSGI handler hands its file to the server's
    ``wsgi.file_wrapper`` where there is one, so the server may send it with
    sendfile(2) and Python never reads it. ``?wrapper=0`` reads the same file
    in Python instead, as a generator, for comparison.
    """
    try:
        size = labkit.parse_body_bytes(request.GET.get("bytes"))
        use_wrapper = labkit.parse_wrapper(request.GET.get("wrapper"))
    except ValueError as problem:
        return JsonResponse({"error": str(problem)}, status=400)
    file = labkit.body_file(size)
    if use_wrapper:
        response = FileResponse(file, content_type="application/octet-stream")
        response.block_size = labkit.BODY_CHUNK  # what the server reads at a time if it does not sendfile
        return response
    response = StreamingHttpResponse(labkit.file_chunks(file), content_type="application/octet-stream")
    response["Content-Length"] = str(size)
    return response


@csrf_exempt  # an API endpoint for curl and the tests, not a browser form
@require_POST
def upload(request):
    """Read the body from wsgi.input in pieces (not request.body, which holds it all in memory).

    Django reads a body only as far as CONTENT_LENGTH: a chunked body that
    nginx passed on unbuffered has none, and would read as empty, so it is a
    411 instead of a 200 for a body never seen.
    """
    if labkit.chunked_without_length(request.META):
        return JsonResponse(labkit.length_required("Django"), status=411)
    return JsonResponse(labkit.digest_body(request.read))


@csrf_exempt  # POST too: a slow write, for the killed-worker lab (nginx must not send it twice)
@require_http_methods(["GET", "HEAD", "POST"])
def slow(request):
    """Sleep ms milliseconds in the worker, then answer; 400 for a missing or too large ms."""
    try:
        delay = labkit.parse_delay_ms(request.GET.get("ms"))
    except ValueError as problem:
        return JsonResponse({"error": str(problem)}, status=400)
    time.sleep(delay / 1000)
    return JsonResponse({"slept_ms": delay})


@require_safe
def redirect_home(request):
    """Redirect to the home page; reverse() includes SCRIPT_NAME in the Location."""
    return HttpResponseRedirect(reverse("hello"))


@require_safe
def error(request):
    """Fail inside the view: with DEBUG off Django answers a plain 500 and logs the traceback."""
    raise RuntimeError("raised on purpose by /error")
