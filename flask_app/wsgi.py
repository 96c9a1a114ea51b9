"""WSGI entry point: gunicorn and uWSGI both load ``wsgi:app``."""

from labflask import create_app

app = create_app()
