"""App configuration for the lab endpoints."""

from django.apps import AppConfig


class EndpointsConfig(AppConfig):
    """The Django app that answers /, /environ, /stream, /upload, /slow, /redirect and /error."""

    name = "endpoints"
