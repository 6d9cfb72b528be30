"""Read replicas and PgBouncer: Tiddly on the primary alone, on the primary with one read replica, and
through PgBouncer in transaction mode, in the same run, on clusters started here for the run.

    python bench/replicas.py [--seconds 5] [--rounds 3] [--workers 2] [--threads 4]

Starts a PostgreSQL primary, a streaming standby of it (pg_basebackup) and PgBouncer (tests/cluster.py;
Debian's postgresql, pgbouncer), builds the bench's 100,000-row ``users`` table, then, round after round,
serves it three ways and drives each with wrk (bench/wrk.lua, 8 keep-alive connections) for GET one row
by key and a list query (name = X order by email desc, 20 rows at offset 40):

- primary:   tiddly serve --database-url <primary>
- replica:   tiddly serve --database-url <primary> --read-replica <standby>
- pgbouncer: tiddly serve --database-url <pgbouncer>?pooler=transaction
- pgbouncer_t0: the same with TIDDLY_STATEMENT_TIMEOUT_MS=0 (the timeout left to the role's setting,
  ALTER ROLE ... SET statement_timeout: no SET LOCAL, and reads need no transaction)

Prints req/s, p50, p99 and server CPU ms per request (medians over rounds), and the statements each
request cost on the primary and on the replica (pg_stat_statements on both, reset before each timed run;
the replica probe's own statements are counted apart, per second): what choosing a replica adds per
request. Results go to bench/results/replicas-<time>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent / "tests")]

import run  # noqa: E402  (bench/run.py: the table, wrk, CPU and memory sampling)
from cluster import Replicated  # noqa: E402  (tests/cluster.py: the clusters and PgBouncer)

SETUPS = ("primary", "replica", "pgbouncer", "pgbouncer_t0")
WORKLOADS = ("get_pk", "page_name")
PROBE_SQL = ("pg_current_wal_flush_lsn", "pg_is_in_recovery")  # the background probe's statements
STATEMENTS = "SELECT query, calls FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'bench')"


class Served(run.Server):
    """`tiddly serve` with the setup's options, as bench/run.py's Server measures it."""

    def __init__(self, setup: str, parts: Replicated, workers: int, threads: int):
        self.kind, self.port = "tiddly", run.free_port()
        url = parts.pooled_url("bench") if setup.startswith("pgbouncer") else parts.primary.url("bench")
        env = {**os.environ, "TIDDLY_STATEMENT_TIMEOUT_MS": "0"} if setup == "pgbouncer_t0" else None
        extra = ["--read-replica", parts.standby.url("bench"), "--replica-max-lag", "5"] if setup == "replica" else []
        argv = [sys.executable, "-m", "tiddly", "serve", "--models", str(HERE / "bench_models.py"),
                "--database-url", url, "--port", str(self.port), "--workers", str(workers),
                "--threads", str(threads), *extra]
        (HERE / "results").mkdir(exist_ok=True)
        self.log = open(HERE / "results" / f"replicas-{setup}.log", "w")
        self.proc = subprocess.Popen(argv, stderr=self.log, cwd=HERE.parent, env=env)
        deadline = time.time() + 60
        while time.time() < deadline and self.proc.poll() is None:
            try:
                if run.request(self.port, "GET", "/users/1")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"tiddly ({setup}) did not start: see {self.log.name}")


def statement_counts(node) -> tuple[int, int]:
    """(statements, probe statements) run in the bench database since the last reset."""
    rows = node.sql(STATEMENTS, database="bench")
    probe = sum(calls for query, calls in rows if any(p in query for p in PROBE_SQL))
    return sum(calls for _, calls in rows) - probe, probe


def reset_statements(parts: Replicated) -> None:
    for node in (parts.primary, parts.standby):
        node.sql("SELECT pg_stat_statements_reset()", database="bench")


def timed(server: Served, parts: Replicated, workload: str, seconds: float, tag: str) -> dict:
    run.run_wrk(server, workload, 1, tag)  # warm: pools filled, plans cached, the probe running
    reset_statements(parts)
    result = run.run_wrk(server, workload, seconds, tag)
    served = max(result["requests"], 1)
    duration = result["requests"] / result["rps"] if result["rps"] else seconds
    for name, node in (("primary", parts.primary), ("replica", parts.standby)):
        statements, probe = statement_counts(node)
        result[f"{name}_statements_per_request"] = statements / served
        result[f"{name}_probe_statements_per_s"] = probe / duration
    return result


def summarize(rounds: list[dict]) -> dict:
    keys = ("rps", "p50_ms", "p99_ms", "cpu_ms", "primary_statements_per_request",
            "replica_statements_per_request", "primary_probe_statements_per_s", "replica_probe_statements_per_s")
    return {w: {s: {k: statistics.median(r[w][s][k] for r in rounds) for k in keys} for s in SETUPS}
            for w in WORKLOADS}


def print_summary(summary: dict) -> None:
    print(f"{'workload':<10} {'setup':<10}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'CPU ms/req':>11}"
          f"{'stmts/req primary':>19}{'replica':>9}{'probe stmts/s':>15}")
    for workload, setups in summary.items():
        for i, (setup, r) in enumerate(setups.items()):
            probe = r["primary_probe_statements_per_s"] + r["replica_probe_statements_per_s"]
            print(f"{workload if i == 0 else '':<10} {setup:<10}{r['rps']:>8.0f}{r['p50_ms']:>8.1f}{r['p99_ms']:>8.1f}"
                  f"{r['cpu_ms']:>11.2f}{r['primary_statements_per_request']:>19.2f}"
                  f"{r['replica_statements_per_request']:>9.2f}{probe:>15.1f}")
    print("stmts/req: statements each request ran, per pg_stat_statements (BEGIN, SET LOCAL and COMMIT count "
          "as statements; a BEGIN and SET LOCAL sent together are one round trip). probe: the replica probe's "
          "statements per second, all workers, on both nodes.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    settings = {"shared_preload_libraries": "'pg_stat_statements'", "pg_stat_statements.track_utility": "on"}
    with Replicated.start(settings) as parts:
        parts.database("bench")
        parts.primary.sql("CREATE EXTENSION pg_stat_statements", database="bench")
        engine = create_engine(parts.primary.url("bench"))
        run.build_table(engine)
        engine.dispose()
        parts.standby.wait_caught_up(parts.primary, timeout=120)
        rounds = []
        for n in range(args.rounds):
            measured = {w: {} for w in WORKLOADS}
            for setup in SETUPS:
                server = Served(setup, parts, args.workers, args.threads)
                try:
                    for workload in WORKLOADS:
                        measured[workload][setup] = timed(server, parts, workload, args.seconds, f"r{n}{setup}")
                        if measured[workload][setup]["errors"]:
                            raise SystemExit(f"{setup} {workload}: bad answers: {measured[workload][setup]}")
                finally:
                    server.stop()
            rounds.append(measured)
            print(f"round {n + 1} of {args.rounds} done", file=sys.stderr)
    summary = summarize(rounds)
    print_summary(summary)
    out = HERE / "results" / f"replicas-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps({"args": vars(args), "machine": run.machine(), "summary": summary, "rounds": rounds},
                              indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
