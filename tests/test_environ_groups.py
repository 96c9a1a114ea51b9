"""/environ's groups: whose each key is, CGI's, a header, PEP 3333's, the server's, or the app's layers'. No stack."""

import pytest

from wsgilab.container.labkit import environ_group


@pytest.mark.parametrize(("key", "group"), [
    ("SCRIPT_NAME", "cgi"), ("CONTENT_TYPE", "cgi"), ("SERVER_SOFTWARE", "cgi"),
    ("HTTP_HOST", "http"), ("HTTP_CONTENT_TYPE", "http"),
    ("wsgi.input", "wsgi"), ("wsgi.file_wrapper", "wsgi"),
    # extensions under wsgi., and what a server or nginx's uwsgi_params add beyond CGI's
    ("wsgi.input_terminated", "server"), ("wsgi.early_hints", "server"), ("gunicorn.socket", "server"),
    ("uwsgi.version", "server"), ("RAW_URI", "server"), ("REQUEST_URI", "server"), ("REMOTE_PORT", "server"),
    # what middleware and frameworks add
    ("wsgilab.trace", "app"), ("werkzeug.request", "app"), ("CSRF_COOKIE", "app"),
])
def test_each_environ_key_goes_to_whoever_put_it_there(key, group):
    assert environ_group(key) == group
