"""A WSGI middleware in ten lines: how long the app took to start its response, as a response header."""
import time


def timed(app):
    def middleware(environ, start_response):
        started = time.perf_counter()

        def timed_start_response(status, headers, exc_info=None):
            took_ms = (time.perf_counter() - started) * 1000
            return start_response(status, [*headers, ("X-App-Time", f"{took_ms:.2f} ms")], exc_info)

        return app(environ, timed_start_response)

    return middleware
