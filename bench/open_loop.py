"""The soak's load: a closed loop that measures capacity, and an open loop at a fixed rate, over keep-alive connections.

``bench/soak.py`` drives it and watches the stack meanwhile. The open loop
schedules request n at n / rate seconds whatever the stack does, and counts
each one's latency from its schedule, as wrk2 does (no coordinated
omission); a stall shows in the latency of every request scheduled during
it. The load goes to 127.0.0.1, or to an address on a private network
(bench/matrix.py runs it inside nginx's network namespace on compose:
``python bench/open_loop.py HOST PORT PATH RATE SECONDS`` prints the
latencies and statuses as JSON).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass, field

PATHS = ("/django/", "/flask/", "/raw/")
#: At most this many connections at once; a request that would need more counts as a client error.
MAX_CONNECTIONS = 512


class Pool:
    """Keep-alive connections to nginx: an idle one for each request, or a new one."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port, self.host = port, host
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open = 0

    async def get(self, fresh: bool = False) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle and not fresh:
            return self.idle.pop()
        if self.open >= MAX_CONNECTIONS:
            raise ConnectionError(f"more than {MAX_CONNECTIONS} requests in flight")
        self.open += 1
        try:
            return await asyncio.open_connection(self.host, self.port)
        except OSError:
            self.open -= 1
            raise

    def put(self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.idle.append(connection)

    def drop(self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        self.open -= 1
        if connection is not None:
            connection[1].close()


async def fetch(pool: Pool, path: str) -> int:
    """One GET on a pooled connection; its status. The connection goes back if nginx keeps it open.

    An idle connection nginx closed meanwhile (its keepalive_timeout) fails
    before any byte of an answer: the GET goes again on a new connection,
    as browsers and HTTP libraries do.
    """
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    reused = bool(pool.idle)
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = await pool.get()
    try:
        for retry in (False, True):
            reader, writer = connection
            writer.write(request)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                break
            except (asyncio.IncompleteReadError, ConnectionResetError) as error:
                if retry or not reused or getattr(error, "partial", b""):
                    raise
                pool.drop(connection)
                connection = None  # counted out already: a failed get() below must not count it again
                connection = await pool.get(fresh=True)
        status = int(head.split(b" ", 2)[1])
        length = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
        if length is None:
            raise ConnectionError("a response without Content-Length")
        await reader.readexactly(int(length.group(1)))
    except BaseException:
        if connection is not None:
            pool.drop(connection)
        raise
    if re.search(rb"\r\nconnection:\s*close", head, re.IGNORECASE):
        pool.drop(connection)
    else:
        pool.put(connection)
    return status


async def capacity(port: int, seconds: float, connections: int) -> float:
    """Requests per second of a closed loop over the three apps."""
    pool = Pool(port)
    done = 0
    until = time.monotonic() + seconds

    async def client(n: int) -> None:
        nonlocal done
        while time.monotonic() < until:
            await fetch(pool, PATHS[(n + done) % len(PATHS)])
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(connections)))
    return done / (time.monotonic() - started)


@dataclass
class Minute:
    """What one minute of the soak saw."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)


async def soak(port: int, rate: float, minutes: int, each_minute) -> list[Minute]:
    """The open loop: request n is scheduled at n / rate seconds; its latency counts from then."""
    loop = asyncio.get_running_loop()
    pool = Pool(port)
    result = [Minute() for _ in range(minutes)]
    start = loop.time()
    tasks = set()

    async def one(n: int, scheduled: float) -> None:
        minute = result[min(int((scheduled - start) // 60), minutes - 1)]
        try:
            minute.statuses[await fetch(pool, PATHS[n % len(PATHS)])] += 1
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as error:
            minute.errors[type(error).__name__] += 1
        minute.latencies_ms.append((loop.time() - scheduled) * 1000)

    total = int(rate * 60 * minutes)
    next_minute = 1
    reports = []
    for n in range(total):
        scheduled = start + n / rate
        if scheduled >= start + 60 * next_minute:
            # Beside the load, never in its way: the schedule must not wait on docker stats.
            reports.append(asyncio.create_task(each_minute(next_minute, result[next_minute - 1])))
            next_minute += 1
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(n, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks, *reports)
    await each_minute(minutes, result[-1])
    return result


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


async def fixed_rate(port: int, path: str, rate: float, seconds: float,
                     host: str = "127.0.0.1") -> tuple[list[float], Counter]:
    """An open loop on one path: request n at n / rate seconds, each latency from its schedule (ms); and
    how each ended (a status, or an error's name)."""
    loop = asyncio.get_running_loop()
    pool = Pool(port, host)
    latencies: list[float] = []
    ended: Counter = Counter()
    start = loop.time()
    tasks = set()

    async def one(scheduled: float) -> None:
        try:
            ended[await fetch(pool, path)] += 1
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as error:
            ended[type(error).__name__] += 1
        latencies.append((loop.time() - scheduled) * 1000)

    for n in range(int(rate * seconds)):
        scheduled = start + n / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    return latencies, ended


if __name__ == "__main__":  # host port path rate seconds: one open loop, its result as JSON
    import json
    import sys

    host, port, path, rate, seconds = sys.argv[1:6]
    latencies, ended = asyncio.run(fixed_rate(int(port), path, float(rate), float(seconds), host))
    print(json.dumps({"latencies": latencies, "ended": {str(key): count for key, count in ended.items()}}))
