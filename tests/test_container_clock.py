"""Docker's time stamps on the labs' clock (wsgilab.labs.container_clock): reload-and-stop times a queued
request's 502 from when the restarted server exited, which only Docker records."""

import datetime

import pytest

from wsgilab.labs.container_clock import wall_clock_of


def test_dockers_nanosecond_time_stamp_is_read_to_the_microsecond_in_utc():
    expected = datetime.datetime(2026, 12, 6, 23, 10, 1, 123456, tzinfo=datetime.timezone.utc).timestamp()
    assert wall_clock_of("2026-12-06T23:10:01.123456789Z") == expected
    assert wall_clock_of("2026-12-06T23:10:01Z") == pytest.approx(expected - 0.123456, abs=1e-6)
