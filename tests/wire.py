"""A TCP proxy in front of a database server that counts round trips, for tests that count them.

A round trip is counted each time a connection's client speaks after the server answered (or
speaks first): a driver that sends several messages and then waits (a pipeline) makes one.
bench/round_trips.py counts a whole server's requests with it.
"""
from __future__ import annotations

import socket
import threading

from sqlalchemy.engine import make_url


class RoundTrips:
    def __init__(self, url: str):
        parsed = make_url(url)
        self._target = (parsed.host or "127.0.0.1", parsed.port or (5432 if parsed.get_backend_name() == "postgresql"
                                                                     else 3306))
        self._lock, self._count = threading.Lock(), 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = parsed.set(host="127.0.0.1", port=self._listener.getsockname()[1]).render_as_string(
            hide_password=False)
        threading.Thread(target=self._accept, daemon=True).start()

    def take(self) -> int:
        """The round trips since the last take()."""
        with self._lock:
            count, self._count = self._count, 0
        return count

    def _accept(self) -> None:
        while True:
            client, _ = self._listener.accept()
            server = socket.create_connection(self._target)
            turn = {"last": None}
            for source, sink, side in ((client, server, "client"), (server, client, "server")):
                threading.Thread(target=self._pump, args=(source, sink, turn, side), daemon=True).start()

    def _pump(self, source, sink, turn: dict, side: str) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:  # counted before it is passed on, so the answer comes after
                    self._count += side == "client" and turn["last"] != "client"
                    turn["last"] = side
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
