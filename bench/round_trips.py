"""Round trips to the database server per request, counted on the wire, not estimated.

Each server is started again with its database URL pointing at a TCP proxy in front of the database
server (PostgreSQL or MariaDB). The proxy counts a round trip each time a connection's client speaks
after the server has answered (or speaks first): a driver waiting for an answer is one round trip,
however many messages it sent before (a pipeline is one). Requests are sent one at a time, after a
warm-up that lets every pooled connection prepare its statements, so the count is each workload's
steady state: round trips per request, every connection of every worker included.

    python bench/run.py --db postgresql --round-trips-only [--servers tiddly,reference,sandman2,restless]
    (without --round-trips-only, bench/run.py prints the same table after its timed rounds)
"""
from __future__ import annotations

import sys
import uuid
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent / "tests")]

from grammar import STYLES as GRAMMARS  # noqa: E402
from grammar import not_expressible  # noqa: E402
from wire import RoundTrips  # noqa: E402  (tests/wire.py: the proxy that counts)

WARMUP = 60     # requests per workload before counting: every pooled connection prepares its statements
COUNTED = 40    # requests per workload counted (bulk: a tenth)
DELETE_BASE = 40_000_000  # the rows the delete workload removes, far from the timed runs' pools


def workload_requests(api, workload: str, n: int, tag: str) -> list[tuple]:
    """n requests of the workload in the server's grammar (``api``), each its own (new emails, other rows)."""
    if workload == "get_pk":
        return [api.get(50001 + i) for i in range(n)]
    if workload == "page_name":
        return [api.page_name(f"name{i % 500}") for i in range(n)]
    if workload == "page_age":
        return [api.page_age() for _ in range(n)]
    if workload == "insert":
        return [api.insert({"email": f"rt-{tag}-{i}@bench.test", "name": "rt", "age": 30}) for i in range(n)]
    if workload == "update":
        return [api.update(60001 + i, 18 + i % 60) for i in range(n)]
    if workload == "delete":
        return [api.delete(DELETE_BASE + 1 + i) for i in range(n)]
    return [api.bulk([{"email": f"rt-{tag}-{i}-{j}@bench.test", "name": "rt", "age": 20} for j in range(1000)])
            for i in range(n)]


def count_server(bench, server, counter: RoundTrips, engine, workloads, tag: str) -> dict:
    """Round trips per request of each workload on one running server (behind ``counter``);
    ``bench`` is bench/run.py's module (its servers, requests and delete pools)."""
    api = GRAMMARS[bench.STYLES[server.kind]]
    result = {}
    for workload in workloads:
        if not_expressible(server.kind, workload):
            continue
        bulk = workload == "bulk"
        warmup, counted = (2, COUNTED // 10) if bulk else (WARMUP, COUNTED)
        if workload == "delete":
            bench.fill_delete_pool(engine, DELETE_BASE)
        sent = workload_requests(api, workload, warmup + counted, f"{tag}{server.kind}")
        try:
            for i, (method, path, body) in enumerate(sent):
                if i == warmup:
                    counter.take()
                status, answer = bench.request(server.port, method, path, body, api.headers)
                if status >= 300:
                    raise RuntimeError(f"{server.kind} {workload}: {status} {str(answer)[:200]}")
            result[workload] = counter.take() / counted
        finally:
            if workload == "delete":
                bench.drop_delete_pool(engine, DELETE_BASE)
    return result


def count_all(bench, kinds, url: str, engine, workloads, workers: int, threads: int, http: str) -> dict:
    """{server: {workload: round trips per request}} for each server kind, started one at a time."""
    counter = RoundTrips(url)
    tag, counts = uuid.uuid4().hex[:6], {}
    for kind in kinds:
        server = bench.Server(kind, counter.url, bench.free_port(), workers, threads, http)
        try:
            counts[kind] = count_server(bench, server, counter, engine, workloads, tag)
        finally:
            server.stop()
    return counts


def print_counts(counts: dict, workloads) -> None:
    kinds = list(counts)
    print("round trips to the database per request (counted on the wire, steady state):")
    print(f"{'workload':<10}" + "".join(f"{k:>16}" for k in kinds))
    for workload in workloads:
        cells = [f"{counts[k][workload]:>16.2f}" if workload in counts[k] else f"{'n/a':>16}" for k in kinds]
        print(f"{workload:<10}" + "".join(cells))
