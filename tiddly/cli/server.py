"""Run a WSGI app factory under gunicorn, in-process (no gunicorn command line needed)."""
from __future__ import annotations

import errno
import logging
import socket
import sys
from typing import Callable

import click
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger


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


class _Logger(Logger):
    """gunicorn's logger, with the access log "-" on stderr beside the server's other lines
    (gunicorn's own "-" is stdout; reopening /dev/stderr would write over a redirected file)."""

    def setup(self, cfg):
        super().setup(cfg)
        if cfg.accesslog == "-":
            self._set_handler(self.access_log, "-", logging.Formatter(self.access_fmt), stream=sys.stderr)


def check_can_listen(host: str, port: int) -> None:
    """Bind the address once, as gunicorn will, and let it go: a port in use is one line
    now, before anything is opened or created, not gunicorn's retries later."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as gunicorn chooses
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(f"port {port} on {host} is in use (another server?); "
                                       "choose another with --port") from None
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def check_access_log(path: str | None) -> None:
    """The access log can be appended to (or is "-", stderr, or None, none)."""
    if path in (None, "-"):
        return
    try:
        with open(path, "a"):
            pass
    except OSError as exc:
        raise click.ClickException(f"cannot write the access log {path}: {exc.strerror or exc}") from None


def run(factory: Callable, host: str, port: int, workers: int, threads: int,
        access_log: str | None = None) -> None:
    """``access_log``: a file to append one line per request to, "-" for stderr, None for none."""
    options = {
        "bind": address(host, port),
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "accesslog": access_log,
        "logger_class": _Logger,
        "graceful_timeout": 5,
        "keepalive": 5,
        "control_socket_disable": True,  # several servers may run side by side
    }
    _GunicornApp(factory, options).run()
