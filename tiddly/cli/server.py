"""Run the app factory in-process under granian (the default; ASGI, through tiddly/cli/admission.py)
or gunicorn (WSGI); neither's own command line is read."""
from __future__ import annotations

import errno
import logging
import multiprocessing
import socket
import sys
from collections.abc import Callable

import click

CONNECTIONS = 4096  # connections (open requests and streams) each granian worker holds at once
STOP_SECONDS = 5  # a worker still busy this long after Ctrl-C or SIGTERM is killed


GRANIAN_HEADER_BUFFER = 1 << 20  # bytes: granian's read buffer, where a header block must fit whole

def run(factory: Callable, host: str, port: int, workers: int, threads: int, access_log: str | None = None,
        server: str = "granian", limits=None, connections: int = CONNECTIONS) -> None:
    """``access_log``: a file to append one line per request to, "-" for stderr, None for none.
    ``limits``: under granian, the admission layer's bounds (``tiddly.cli.admission.Limits``)."""
    if server == "gunicorn":
        _run_gunicorn(factory, host, port, workers, threads, access_log)
    else:
        _run_granian(factory, host, port, workers, threads, access_log, limits, connections)


# -- granian ----------------------------------------------------------------------------

def _run_granian(factory: Callable, host: str, port: int, workers: int, threads: int,
                 access_log: str | None, limits, connections: int) -> None:
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.server import Server

    from tiddly.cli.admission import Admission, Limits

    limits = limits or Limits()
    _allow_open_files(workers * connections + 256)
    # ASGI: each worker's event loop reads bodies and holds streams; Admission runs the Flask
    # app in `threads` threads of its own (tiddly/cli/admission.py). granian's own limit on the
    # header block sits well above Tiddly's, which answers 431 with a body that says why (past
    # granian's, granian answers a bare 431 itself).
    server = Server("tiddly", address=host, port=port, interface=Interfaces.ASGINL, workers=workers,
                    backpressure=connections, http=HTTPModes.http1, websockets=True,
                    http1_settings=HTTP1Settings(max_buffer_size=max(limits.header_bytes * 16, GRANIAN_HEADER_BUFFER)),
                    log_dictconfig=_granian_logging(access_log),
                    workers_kill_timeout=STOP_SECONDS, respawn_failed_workers=True)
    # A worker that dies (kill -9, the OOM killer) is replaced while the others serve on; granian
    # stops the server only when the same worker dies again within ~5 s of its replacement.
    # Workers are forked, as gunicorn's are, so the app factory (a closure over the schema
    # prepared once) reaches them as it is; granian would spawn them where fork is not the default.
    multiprocessing.set_start_method("fork", force=True)
    server.serve(target_loader=lambda: Admission(factory(), threads, limits, access_log is not None),
                 wrap_loader=False)


def _allow_open_files(wanted: int) -> None:
    """Raise the soft limit on open files toward ``wanted`` (each connection is one), up to the hard limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _granian_logging(access_log: str | None) -> dict:
    """granian's lines and the access log on stderr (or the access log in its file)."""
    if access_log in (None, "-"):
        access = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "bare"}
    else:
        access = {"class": "logging.FileHandler", "filename": access_log, "mode": "a", "formatter": "bare"}
    return {
        "formatters": {"server": {"format": "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
                                  "datefmt": "%Y-%m-%d %H:%M:%S %z"},
                       "bare": {"format": "%(message)s"}},
        "handlers": {"server": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "server"},
                     "access": access},
        "loggers": {"_granian": {"handlers": ["server"], "level": "INFO", "propagate": False},
                    "granian.access": {"handlers": [], "propagate": False},
                    "tiddly.access": {"handlers": ["access"], "level": "INFO", "propagate": False}},
    }


# -- gunicorn ---------------------------------------------------------------------------

def _run_gunicorn(factory: Callable, host: str, port: int, workers: int, threads: int,
                  access_log: str | None) -> None:
    from gunicorn.app.base import BaseApplication
    from gunicorn.glogging import Logger

    class GunicornApp(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            # Called in each worker after the fork: every worker gets its own engine and pool.
            return factory()

    class GunicornLogger(Logger):
        """gunicorn's logger, with the access log "-" on stderr beside the server's other lines
        (gunicorn's own "-" is stdout; reopening /dev/stderr would write over a redirected file)."""

        def setup(self, cfg):
            super().setup(cfg)
            if cfg.accesslog == "-":
                self._set_handler(self.access_log, "-", logging.Formatter(self.access_fmt), stream=sys.stderr)

    options = {
        "bind": address(host, port),
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "accesslog": access_log,
        "logger_class": GunicornLogger,
        "graceful_timeout": STOP_SECONDS,
        "keepalive": 5,
        "control_socket_disable": True,  # several servers may run side by side
    }
    GunicornApp().run()


# -- checks before serving ----------------------------------------------------------------

def address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (``[::1]:5000``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
