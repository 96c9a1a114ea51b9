"""An app that cannot be imported, for the import-failure lab.

The commonest way a deploy never serves a request: the code needs a package
the image does not have. This module imports one that does not exist, so a
server told to load it (``RAW_WSGI_APP=wsgilab.container.unimportable_app:application``)
fails exactly as it would on a real missing dependency: with
``ModuleNotFoundError`` while it imports the app.
"""

import wsgilab_lab_missing_dependency  # noqa: F401  (no such package, on purpose)


def application(environ, start_response):  # pragma: no cover: never reached
    """Never called: the import above fails first."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"unreachable\n"]
