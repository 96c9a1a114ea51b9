"""The Flask app of wsgi-lab, built by an application factory as Flask's docs advise."""

import os

from flask import Flask

from wsgilab.container.flask_trace import trace_flask


def create_app() -> Flask:
    """Create the Flask app and register the lab endpoints on it."""
    app = Flask(__name__)
    # Twin of nginx's client_max_body_size: a larger body gets a 413 here too.
    app.config["MAX_CONTENT_LENGTH"] = int(os.environ.get("FLASK_MAX_CONTENT_LENGTH", 16 * 1024 * 1024))
    # Sessions are not used; a key from the environment keeps the door shut if they ever are.
    app.config["SECRET_KEY"] = os.environ.get("FLASK_SECRET_KEY") or None

    from . import items, views

    app.register_blueprint(views.bp)
    app.register_blueprint(items.bp)
    # Record Flask's request hooks and each view in the request's hop trace.
    return trace_flask(app)
