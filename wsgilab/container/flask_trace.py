"""Flask's hop in a request's trace: its request hooks, and the views themselves.

    app = Flask(__name__)
    ...                      # register blueprints first
    trace_flask(app)

Flask runs ``before_request`` functions, the view, ``after_request``
functions, then (after the response has been handed to the server)
``teardown_request``. ``trace_flask`` registers one of each that marks the
moment in the request's trace, and wraps every registered view in
``wsgilab.container.traced_views.traced_view``. Without a trace being gathered (HopTrace off)
they do nothing.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request

from wsgilab.container.traced_views import traced_view
from wsgilab.container.wsgi_trace import mark


def trace_flask(app: Flask) -> Flask:
    """Add the trace hooks to ``app`` and wrap its views; call it after registering blueprints."""

    @app.before_request
    def _before_request() -> None:
        mark("flask", "before_request", endpoint=request.endpoint)

    @app.after_request
    def _after_request(response: Any) -> Any:
        mark("flask", "after_request", status=response.status_code)
        return response

    @app.teardown_request
    def _teardown_request(error: BaseException | None) -> None:
        if error is None:
            mark("flask", "teardown_request")
        else:
            mark("flask", "teardown_request", error=type(error).__name__)

    for endpoint, view in list(app.view_functions.items()):
        if endpoint != "static":
            app.view_functions[endpoint] = traced_view(view)
    return app
