"""README's performance tables from one run's results: req/s and server CPU ms per request per
workload, for Tiddly and the servers beside it, one column group per database.

    python bench/readme_table.py bench/results/sqlite-<time>.json bench/results/postgresql-<time>.json
                                 [--servers tiddly,reference,sandman2,restless]

Each other server's cell carries Tiddly's ratio to it, the median of same-round ratios (req/s: above 1
Tiddly serves more; CPU: below 1 Tiddly spends less). A workload a server cannot express is n/a, its
reason listed under the tables; a server with bad answers in a run gets no number.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LABELS = {"tiddly": "Tiddly", "reference": "hand-written", "floor": "floor", "flask_floor": "Flask floor",
          "sandman2": "sandman2", "restless": "Flask-Restless-NG"}
DATABASES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MariaDB"}
WORKLOADS = {"get_pk": "get one row by key", "page_name": "name = X, order by email desc, page 20 at 40",
             "page_age": "30 < age < 40 order by id, 50 rows", "insert": "insert one row",
             "update": "update one row", "delete": "delete one row", "bulk": "bulk insert, 1,000 rows"}
METRICS = {"rps": ("requests per second", "{:.0f}"), "cpu_ms": ("server CPU ms per request", "{:.2f}")}


def cell(entry: dict, server: str, metric: str) -> str:
    result = entry.get(server)
    if result is None:
        return ""
    if "n/a" in result:
        return "n/a"
    if result["errors"]:
        return f"bad answers ({result['errors']})"
    text = METRICS[metric][1].format(result[metric])
    ratio = entry.get(f"tiddly/{server}" + (" cpu" if metric == "cpu_ms" else ""))
    return text if server == "tiddly" or ratio is None else f"{text} ({ratio:.2f}x)"


def table(runs: list[dict], servers: list[str], metric: str) -> list[str]:
    header = ["workload"] + [f"{DATABASES.get(r['db'], r['db'])}: {LABELS[s]}" if i == 0 else LABELS[s]
                             for r in runs for i, s in enumerate(servers)]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    workloads = [w for w in WORKLOADS if any(w in r["summary"] for r in runs)]
    for w in workloads:
        cells = [cell(r["summary"].get(w, {}), s, metric) for r in runs for s in servers]
        lines.append("| " + " | ".join([WORKLOADS[w], *cells]) + " |")
    return lines


def reasons(runs: list[dict], servers: list[str]) -> list[str]:
    seen = {}
    for r in runs:
        for w, entry in r["summary"].items():
            for s in servers:
                if "n/a" in entry.get(s, {}):
                    seen.setdefault((s, entry[s]["n/a"]), []).append(WORKLOADS[w])
    return [f"- n/a, {LABELS[s]}, {', '.join(dict.fromkeys(ws))}: {why}." for (s, why), ws in seen.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="bench/run.py's JSON files, one per database")
    parser.add_argument("--servers", default="tiddly,reference,sandman2,restless")
    args = parser.parse_args()
    runs = [json.loads(p.read_text()) for p in args.results]
    servers = [s for s in args.servers.split(",") if any(s in e for r in runs for e in r["summary"].values())]
    if "tiddly" not in servers:
        sys.exit("the results have no Tiddly run to take ratios to")
    first = runs[0]
    a, m = first["args"], first["machine"]
    print(f"`python bench/run.py --db {'|'.join(r['db'] for r in runs)} --seconds {a['seconds']} "
          f"--rounds {a['rounds']} --servers {','.join(servers)}`: {a.get('http', 'gunicorn')}, {a['workers']} "
          f"workers x {a['threads']} threads, 8 keep-alive wrk connections, "
          f"{'medians of ' + str(a['rounds']) + ' rounds' if a['rounds'] > 1 else 'one round'}; "
          f"{m['cores']}-core {m['cpu']}, Python {m['python']} "
          f"({', '.join(p.name for p in args.results)}).\n")
    for metric, (title, _) in METRICS.items():
        print(f"{title[0].upper()}{title[1:]} (in brackets Tiddly's ratio to that server, same-round medians):\n")
        print("\n".join(table(runs, servers, metric)) + "\n")
    print("\n".join(reasons(runs, servers)))


if __name__ == "__main__":
    main()
