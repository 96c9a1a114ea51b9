"""What the kernel holds at a listening port: the backlog in force, the accept queue, and the half-open handshakes.

A WSGI server's ``backlog`` (gunicorn) or ``listen`` (uWSGI) is only a
request: the kernel caps it at ``net.core.somaxconn`` and keeps the real
numbers itself. This reads them the way ``ss -lnt`` does, so the
full-listen-queue lab can confirm the queue it is about to fill instead of
assuming it:

- ``limit``: the accept queue's length in force (``ss``'s Send-Q of a
  listening socket, ``sk_max_ack_backlog``), from the kernel's sock_diag
  netlink interface; Linux holds one more connection than this;
- ``queued``: connections whose handshake is done, waiting for the server's
  ``accept()`` (``ss``'s Recv-Q, ``sk_ack_backlog``);
- ``established``: connections established at the port, accepted or not;
- ``half_open``: handshakes the kernel answered (SYN-ACK sent) whose last ACK
  it has not taken yet (SYN_RECV): a client may already think them open;
- ``overflows``: connection attempts dropped because an accept queue was
  full, in this network namespace so far (``nstat``'s TcpExtListenOverflows):
  the only place a full queue is counted when the server is gunicorn.

In this network namespace they come from sock_diag (``read``), the overflows from ``/proc/net/netstat``;
in another (a container's, from the host) from its ``/proc/PID/net/tcp`` and ``tcp6`` (``look``). Run inside
an app container (``python -m wsgilab.container.listen_socket [PORT]``; the
port the container's server binds by default) it prints them as JSON; the
labs read a container's tables from the host when they can
(``/proc/PID/net/tcp``) and ask this only for the limit.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

#: Where this network namespace's TCP tables and counters are (a process's own: /proc/PID/net).
PROC_NET = Path("/proc/net")

#: /proc/net/tcp's states (include/net/tcp_states.h): ESTABLISHED, SYN_RECV, LISTEN.
_ESTABLISHED, _SYN_RECV, _LISTEN = "01", "03", "0A"

# sock_diag (linux/sock_diag.h, linux/inet_diag.h): a dump of this namespace's TCP sockets in the states asked for.
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST_DUMP = 0x1 | 0x300
_NLMSG_DONE, _NLMSG_ERROR = 3, 2
_TCP_ESTABLISHED, _TCP_SYN_RECV, _TCP_LISTEN = 1, 3, 10
_NLMSGHDR = struct.Struct("=IHHII")
#: inet_diag_req_v2: family, protocol, ext, pad, states, then an inet_diag_sockid (48 bytes, zero: any).
_REQUEST = struct.Struct("=BBBBI48x")
#: inet_diag_msg: family, state, timer, retrans, sport (network order), dport, src, dst, if, cookie,
#: expires, rqueue, wqueue, uid, inode.
_MESSAGE = struct.Struct("=BBBB2H16s16sI8sIIIII")


@dataclass(frozen=True)
class ListenSocket:
    """The kernel's numbers for one listening port (see the module docstring)."""

    port: int
    limit: int | None
    queued: int
    established: int
    half_open: int
    overflows: int


def _diag(port: int, states: int) -> Iterator[tuple]:
    """sock_diag's message for each TCP socket in this namespace whose local port is ``port``, in one of the
    ``states`` (a mask of 1 << state): the kernel leaves the other states out, however many there are."""
    for family in (socket.AF_INET, socket.AF_INET6):
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as diag:
            body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, states)
            diag.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, 1, 0)
                      + body)
            done = False
            while not done:
                data = diag.recv(65536)
                offset = 0
                while offset + _NLMSGHDR.size <= len(data):
                    length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
                    if kind in (_NLMSG_DONE, _NLMSG_ERROR) or length < _NLMSGHDR.size:
                        done = True
                        break
                    fields = _MESSAGE.unpack_from(data, offset + _NLMSGHDR.size)
                    if socket.ntohs(fields[4]) == port:
                        yield fields
                    offset += (length + 3) & ~3


def diag_counts(port: int) -> tuple[int | None, int, int, int]:
    """(limit, queued, established, half_open) at ``port`` in this namespace, from one sock_diag dump.

    Only the listening, established and half-open sockets are asked for: a host's /proc/net/tcp can hold
    thousands of TIME_WAIT rows (12 789, a read of 100 to 400 ms, beside the swarm tier's tests), which a
    lab watching a queue fill must not wait on. A connection is counted once, as in ``parse_tables``.
    """
    limits, queued = [], 0
    connections: dict[int, set[tuple]] = {_TCP_ESTABLISHED: set(), _TCP_SYN_RECV: set()}
    for fields in _diag(port, (1 << _TCP_LISTEN) | (1 << _TCP_ESTABLISHED) | (1 << _TCP_SYN_RECV)):
        if fields[1] == _TCP_LISTEN:
            limits.append(fields[12])  # wqueue: sk_max_ack_backlog, the limit in force (ss -lnt)
            queued += fields[11]  # rqueue: sk_ack_backlog, the connections waiting for accept()
        elif fields[1] in connections:
            connections[fields[1]].add((fields[0], fields[5], fields[6], fields[7]))
    return (min(limits) if limits else None, queued, len(connections[_TCP_ESTABLISHED]),
            len(connections[_TCP_SYN_RECV]))


def parse_tables(rows: list[str], port: int) -> tuple[int, int, int]:
    """(queued, established, half_open) at local ``port`` from the rows of /proc/net/tcp and tcp6.

    A connection is counted once however often it appears: the kernel writes
    a large table in several reads, and a row can come twice when sockets
    come and go between them.
    """
    suffix = f":{port:04X}"
    listening: dict[str, int] = {}
    connections: dict[str, set[tuple[str, str]]] = {_ESTABLISHED: set(), _SYN_RECV: set()}
    # Each row: sl local_address rem_address st tx_queue:rx_queue ...; a listening row's rx_queue is its queue.
    for row in map(str.split, rows):
        if len(row) < 5 or not row[1].endswith(suffix):
            continue
        if row[3] == _LISTEN:
            listening[row[1]] = int(row[4].split(":")[1], 16)
        elif row[3] in connections:
            connections[row[3]].add((row[1], row[2]))
    return sum(listening.values()), len(connections[_ESTABLISHED]), len(connections[_SYN_RECV])


def read_tables(proc_net: Path = PROC_NET) -> list[str]:
    """The rows of the namespace's TCP tables (tcp6 is missing without IPv6: no rows from it)."""
    rows: list[str] = []
    for table in ("tcp", "tcp6"):
        try:
            rows += (proc_net / table).read_text().splitlines()[1:]
        except FileNotFoundError:
            pass
    return rows


def listen_overflows(proc_net: Path = PROC_NET) -> int:
    """TcpExt ListenOverflows from the namespace's /proc/net/netstat (pairs of lines: names, then values)."""
    lines = (proc_net / "netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split())).get("ListenOverflows", 0))
    return 0


def look(port: int, limit: int | None, proc_net: Path = PROC_NET) -> ListenSocket:
    """The counts at ``port`` from the tables under ``proc_net``, with the ``limit`` read before.

    The tables are read until two reads in a row agree (at most a few times): a table larger than one read
    is no snapshot, and a row that moved between two reads can be missed or seen twice.
    """
    counts = parse_tables(read_tables(proc_net), port)
    for _ in range(5):
        again = parse_tables(read_tables(proc_net), port)
        if again == counts:
            break
        counts = again
    return ListenSocket(port, limit, *counts, listen_overflows(proc_net))


def read(port: int) -> ListenSocket:
    """Everything above for ``port``, in the network namespace this runs in (sock_diag: no table read)."""
    return ListenSocket(port, *diag_counts(port), listen_overflows())


def main(argv: list[str] | None = None) -> None:
    """``python -m wsgilab.container.listen_socket [PORT]``: print what the kernel holds at PORT, as JSON.

    Without PORT: the port this container's server binds (WSGI_BIND, or its server's default).
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and not args[0].isdigit()):
        sys.exit("usage: python -m wsgilab.container.listen_socket [PORT]")
    if args:
        port = int(args[0])
    else:
        from wsgilab.container.launch import server_environment
        port = int(server_environment(os.environ)["WSGI_BIND"].rpartition(":")[2])
    print(json.dumps(asdict(read(port))))


if __name__ == "__main__":
    main()
