"""Run a WSGI app factory under gunicorn, in-process (no gunicorn command line needed)."""
from __future__ import annotations

from typing import Callable

from gunicorn.app.base import BaseApplication


class _GunicornApp(BaseApplication):
    def __init__(self, factory: Callable, options: dict):
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self):
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        # Called in each worker after the fork: every worker gets its own engine and pool.
        return self._factory()


def address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (``[::1]:5000``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run(factory: Callable, host: str, port: int, workers: int, threads: int) -> None:
    options = {
        "bind": address(host, port),
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "accesslog": None,
        "graceful_timeout": 5,
        "keepalive": 5,
        "control_socket_disable": True,  # several servers may run side by side
    }
    _GunicornApp(factory, options).run()
