"""A lean HTTP/1.1 client for the HTTP benches: the load generator shares the machine's cores with the
server it measures, so it should cost as little CPU as it can (``http.client`` parses every answer's
headers with the ``email`` package: about a third of a millisecond per request, as much as a tenth of
the server's own work; this costs about a tenth of that). Load generators such as wrk are written in C
for the same reason.

It speaks only what the benches need: one request at a time on a connection, an answer with a
``Content-Length`` (gunicorn sends one for every Flask answer), keep-alive unless the server says
``Connection: close``.
"""

from __future__ import annotations

import socket


class Closed(ConnectionError):
    """The server closed the connection before answering (a kept-alive connection it timed out)."""


class Connection:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = f"{host}:{port}".encode()
        self.buffer = b""

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, bool]:
        """Send one request; (status, body, whether the server keeps the connection open)."""
        head = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self.host, b"Content-Length: %d" % len(body)]
        head += [f"{name}: {value}".encode() for name, value in headers.items()]
        self.sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        return self._answer()

    def _answer(self) -> tuple[int, bytes, bool]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, keep = None, True
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                keep = False
        if length is None:
            raise ValueError(f"an answer without Content-Length: {head[:300]!r}")
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, body, keep

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Closed("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def post_once(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """One POST on a new connection, closed after the answer (as WeChat Pay sends a notification)."""
    conn = Connection(port)
    try:
        status, answer, _ = conn.request("POST", path, body, headers)
        return status, answer
    finally:
        conn.close()
