"""Real parts for the scale-out tests and the replica bench, started on this machine on free ports
in their own directories (never the shared server's configuration): a PostgreSQL primary
(initdb, wal_level=replica), a streaming standby made with pg_basebackup, Debian's PgBouncer in
transaction mode, and HAProxy in front of several `tiddly serve`.

    with Replicated.start() as parts:       # primary + standby + pgbouncer, about 3 s
        parts.primary.url("app")             # postgresql+psycopg://postgres@127.0.0.1:<port>/app
        parts.standby.pause_replay()
        parts.pooled_url("app")              # through PgBouncer, with ?pooler=transaction

Run as root, the clusters and PgBouncer run as the ``postgres`` user (initdb and PgBouncer
refuse root), in directories that user owns.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg

PG_BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
PG_BIN = Path(PG_BINS[-1]) if PG_BINS else None
TOOLS = {"initdb": "postgresql", "pg_basebackup": "postgresql", "pgbouncer": "pgbouncer", "haproxy": "haproxy"}


def missing_tools() -> list[str]:
    """The Debian packages whose programs these parts need and this machine lacks."""
    found = {
        "initdb": PG_BIN is not None and (PG_BIN / "initdb").exists(),
        "pg_basebackup": PG_BIN is not None and (PG_BIN / "pg_basebackup").exists(),
        "pgbouncer": shutil.which("pgbouncer") or os.path.exists("/usr/sbin/pgbouncer"),
        "haproxy": shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy"),
    }
    return sorted({TOOLS[name] for name, ok in found.items() if not ok})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _owned_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    return path


def _run(command: list[str], **kwargs) -> None:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def _wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Postgres:
    """One PostgreSQL cluster of its own: a directory, a port, pg_ctl."""

    def __init__(self, data: Path, port: int):
        self.data, self.port = data, port
        self.log = data.parent / f"{data.name}.log"

    @classmethod
    def primary(cls, settings: dict | None = None) -> "Postgres":
        root = _owned_dir("tiddly-pg-")
        data = root / "primary"
        _run(_as_postgres() + [str(PG_BIN / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres",
                               "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"])
        node = cls(data, free_port())
        node._configure({"wal_level": "replica", "max_wal_senders": 10, "hot_standby": "on",
                         "fsync": "off", "full_page_writes": "off", "shared_buffers": "64MB",
                         "max_connections": 200, **(settings or {})})
        node.start()
        return node

    def standby(self) -> "Postgres":
        """A streaming standby of this cluster, made with pg_basebackup, on its own port."""
        data = self.data.parent / f"standby-{free_port()}"
        _run(_as_postgres() + [str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port),
                               "-U", "postgres", "-D", str(data), "-R", "-X", "stream", "-c", "fast",
                               "--no-sync"])
        node = Postgres(data, free_port())
        node._configure({"hot_standby_feedback": "on", "wal_receiver_status_interval": "1s"})
        node.start()
        return node

    def _configure(self, settings: dict) -> None:
        lines = {"port": self.port, "listen_addresses": "'127.0.0.1'",
                 "unix_socket_directories": f"'{self.data.parent}'", **settings}
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("".join(f"{key} = {value}\n" for key, value in lines.items()))

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        _run(_as_postgres() + [str(PG_BIN / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data),
                               "-l", str(self.log)])

    def stop(self, mode: str = "fast") -> None:
        _run(_as_postgres() + [str(PG_BIN / "pg_ctl"), "stop", "-w", "-t", "60", "-m", mode,
                               "-D", str(self.data)])

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def sql(self, query: str, params=None, database: str = "postgres"):
        """Run one statement in autocommit; the rows it returns, if any."""
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database,
                             autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else None

    def create_database(self, name: str) -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.sql(f'CREATE DATABASE "{name}"')

    # -- a standby's replay ----------------------------------------------------

    def pause_replay(self) -> None:
        self.sql("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.sql("SELECT pg_wal_replay_resume()")

    def replayed(self) -> int:
        return self.sql("SELECT (pg_last_wal_replay_lsn() - '0/0')::bigint")[0][0]

    def wait_caught_up(self, primary: "Postgres", timeout: float = 20) -> None:
        """Until this standby has replayed everything the primary had written when this began."""
        target = primary.sql("SELECT (pg_current_wal_insert_lsn() - '0/0')::bigint")[0][0]
        deadline = time.monotonic() + timeout
        while self.replayed() < target:
            if time.monotonic() > deadline:
                raise RuntimeError("the standby did not catch up in time")
            time.sleep(0.02)

    def destroy(self) -> None:
        if self.running:
            try:
                self.stop("immediate")
            except RuntimeError:
                pass
        shutil.rmtree(self.data, ignore_errors=True)


class PgBouncer:
    """Debian's PgBouncer in transaction mode in front of one PostgreSQL, every database name
    passed through, its default startup-parameter rules (``options`` refused)."""

    def __init__(self, target: Postgres, settings: dict | None = None):
        """``settings``: more of pgbouncer.ini's [pgbouncer] section (ignore_startup_parameters ...)."""
        self.dir = _owned_dir("tiddly-pgbouncer-")
        self.port = free_port()
        ini, users = self.dir / "pgbouncer.ini", self.dir / "userlist.txt"
        users.write_text('"postgres" ""\n')
        ini.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={target.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {users}\npool_mode = transaction\n"
            "max_client_conn = 500\ndefault_pool_size = 20\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\npidfile = {self.dir / 'pgbouncer.pid'}\n"
            "admin_users = postgres\nstats_users = postgres\n"
            # PgBouncer waits 15 s by default before it tries again a server it could not log in to
            "server_login_retry = 1\n"
            + "".join(f"{key} = {value}\n" for key, value in (settings or {}).items()))
        if os.geteuid() == 0:
            for path in (ini, users):
                shutil.chown(path, "postgres", "postgres")
        as_postgres = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}
        self.process = subprocess.Popen(["pgbouncer", str(ini)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, **as_postgres)  # its own pid: signals reach it
        _wait_port(self.port)

    def url(self, database: str, pooler: bool = True) -> str:
        query = "?pooler=transaction" if pooler else ""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}{query}"

    def show(self, what: str) -> list[dict]:
        """PgBouncer's admin console: SHOW POOLS, SHOW STATS ..."""
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="pgbouncer",
                             autocommit=True, prepare_threshold=None) as conn:
            cursor = conn.cursor()
            cursor.execute(f"SHOW {what}")
            names = [c.name for c in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class HAProxy:
    """HAProxy balancing HTTP round robin over ``backends`` (base URLs); every answer names the
    instance that gave it in ``X-Tiddly-Server`` (a, b, ...)."""

    def __init__(self, backends: list[str]):
        self.dir = Path(tempfile.mkdtemp(prefix="tiddly-haproxy-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        servers = "".join(f"  server {chr(ord('a') + i)} {b.split('://', 1)[1]}\n" for i, b in enumerate(backends))
        config = self.dir / "haproxy.cfg"
        config.write_text(
            "global\n  maxconn 512\n"
            "defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"
            f"frontend web\n  bind 127.0.0.1:{self.port}\n  default_backend tiddly\n"
            "backend tiddly\n  balance roundrobin\n  http-response set-header X-Tiddly-Server %s\n"
            + servers)
        self.process = subprocess.Popen(["haproxy", "-f", str(config), "-db"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Replicated:
    """A primary, one streaming standby of it, and PgBouncer in front of the primary."""

    def __init__(self, primary: Postgres, standby: Postgres, bouncer: PgBouncer):
        self.primary, self.standby, self.bouncer = primary, standby, bouncer

    @classmethod
    @contextmanager
    def start(cls, settings: dict | None = None):
        primary = Postgres.primary(settings)
        standby = bouncer = None
        try:
            standby = primary.standby()
            bouncer = PgBouncer(primary)
            yield cls(primary, standby, bouncer)
        finally:
            if bouncer:
                bouncer.stop()
            if standby:
                standby.destroy()
            primary.destroy()
            shutil.rmtree(primary.data.parent, ignore_errors=True)

    def database(self, name: str) -> None:
        """A new, empty database ``name`` on the primary, there on the standby too when this returns."""
        if not self.primary.running:
            self.primary.start()
        if not self.standby.running:
            self.standby.start()
        self.standby.resume_replay()
        self.primary.create_database(name)
        self.standby.wait_caught_up(self.primary)

    def pooled_url(self, database: str) -> str:
        return self.bouncer.url(database)
