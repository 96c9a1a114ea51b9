"""What the kernel holds at a listening port, read as `ss -lnt` reads it: the backlog in force, the queue, the
connections; a connection counted once however often a table read shows it. No stack: sockets of the test's own."""

import socket
import time

from wsgilab.container import listen_socket


def test_a_full_accept_queue_holds_backlog_plus_one_and_drops_the_rest():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert listen_socket.read(port) == listen_socket.ListenSocket(port, 1, 0, 0, 0,
                                                                      listen_socket.read(port).overflows)
        clients = []
        try:
            for _ in range(4):
                client = socket.socket()
                client.setblocking(False)
                client.connect_ex(("127.0.0.1", port))
                clients.append(client)
                time.sleep(0.05)
            seen = listen_socket.read(port)
            # Linux holds backlog + 1 finished handshakes; the others' SYNs were dropped, not answered
            assert (seen.limit, seen.queued, seen.established, seen.half_open) == (1, 2, 2, 0)
        finally:
            for client in clients:
                client.close()


def test_a_row_a_table_read_shows_twice_is_one_connection():
    with socket.socket() as server, socket.socket() as client:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        client.connect(("127.0.0.1", port))
        rows = [row for row in listen_socket.read_tables() if row.split()[1].endswith(f":{port:04X}")]
        assert listen_socket.parse_tables(rows, port) == (1, 1, 0)
        assert listen_socket.parse_tables(rows + rows, port) == (1, 1, 0)
