"""Reading a stack's logs again until what a request left there has arrived (the labs' and the tests' waits).

A request's lines reach the logs a moment after its answer: a worker holds
its finished trace line for WSGILAB_TRACE_FLUSH_MS (50 ms by default), and on
compose Docker's log driver adds its own few milliseconds. Re-reading every
quarter second made each such wait about a quarter second, most of it spent
after the lines were there, and a lab or the test suite reads back hundreds
of requests. These re-reads begin just past the flush and grow to a quarter
second, so a wait costs about what the lines take to arrive, and a stack
slowed by load is read no more often than before.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

#: The pauses between reads, in seconds: the first just past a worker's 50 ms flush; then the last, repeated.
PAUSES_S = (0.06, 0.06, 0.1, 0.15, 0.2, 0.25)


def pauses() -> Iterator[float]:
    """The pause before each read after the first: PAUSES_S, then its last for ever."""
    return itertools.chain(PAUSES_S, itertools.repeat(PAUSES_S[-1]))


def read_until(read: Callable[[], T], done: Callable[[T], bool], wait_s: float = 5.0) -> T:
    """``read()`` again until ``done`` says its answer is complete; the last answer, complete or not.

    It gives up only after a read that *began* ``wait_s`` after the call, as
    wsgilab.labs.kit's reads do: one read of a large log can take a second under load.
    """
    deadline = time.monotonic() + wait_s
    for pause in pauses():
        began = time.monotonic()
        answer = read()
        if done(answer) or began >= deadline:
            return answer
        time.sleep(pause)
    raise AssertionError("unreachable: pauses() never ends")
