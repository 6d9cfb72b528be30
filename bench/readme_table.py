"""README's performance tables from one run's results: req/s and server CPU ms per request per
workload, for Tiddly (served with --models and with --reflect) and the servers beside it, one column
group per database.

    python bench/readme_table.py bench/results/sqlite-<time>.json bench/results/postgresql-<time>.json
                                 [--servers tiddly,tiddly_reflect,reference,sandman2,restless]
                                 [--before] [--change]

Each other server's cell carries Tiddly's ratios to it, --models first, then --reflect: the median of
same-round ratios (req/s: above 1 Tiddly serves more; CPU: below 1 Tiddly spends less). A workload a
server cannot express is n/a, its reason listed under the tables; a server with bad answers in a run
gets no number. A run made with bench/run.py --before also holds the code before a change: --before
prints the same tables for it, --change the two side by side (req/s, p99).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LABELS = {"tiddly": "Tiddly", "tiddly_reflect": "Tiddly --reflect", "reference": "hand-written", "floor": "floor",
          "flask_floor": "Flask floor", "sandman2": "sandman2", "restless": "Flask-Restless-NG",
          "before": "Tiddly", "before_reflect": "Tiddly --reflect"}
DATABASES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MariaDB"}
WORKLOADS = {"get_pk": "get one row by key", "page_name": "name = X, order by email desc, page 20 at 40",
             "page_age": "30 < age < 40 order by id, 50 rows", "insert": "insert one row",
             "update": "update one row", "delete": "delete one row", "bulk": "bulk insert, 1,000 rows"}
METRICS = {"rps": ("requests per second", "{:.0f}"), "cpu_ms": ("server CPU ms per request", "{:.2f}")}
SUBJECTS = {False: ("tiddly", "tiddly_reflect"), True: ("before", "before_reflect")}


def cell(entry: dict, server: str, metric: str, subjects: tuple) -> str:
    result = entry.get(server)
    if result is None:
        return ""
    if "n/a" in result:
        return "n/a"
    if result["errors"]:
        return f"bad answers ({result['errors']})"
    text = METRICS[metric][1].format(result[metric])
    suffix = " cpu" if metric == "cpu_ms" else ""
    ratios = [entry.get(f"{subject}/{server}{suffix}") for subject in subjects if subject in entry]
    if server in subjects or not any(r is not None for r in ratios):
        return text
    return f"{text} ({', '.join('-' if r is None else f'{r:.2f}x' for r in ratios)})"


def table(runs: list[dict], servers: list[str], metric: str, subjects: tuple) -> list[str]:
    header = ["workload"] + [f"{DATABASES.get(r['db'], r['db'])}: {LABELS[s]}" if i == 0 else LABELS[s]
                             for r in runs for i, s in enumerate(servers)]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    workloads = [w for w in WORKLOADS if any(w in r["summary"] for r in runs)]
    for w in workloads:
        cells = [cell(r["summary"].get(w, {}), s, metric, subjects) for r in runs for s in servers]
        lines.append("| " + " | ".join([WORKLOADS[w], *cells]) + " |")
    return lines


def change_table(runs: list[dict]) -> list[str]:
    """Each Tiddly after the change against the same before it, same run: req/s (ratio) and p99."""
    lines = ["| workload | " + " | ".join(f"{DATABASES.get(r['db'], r['db'])}: {LABELS[a]} req/s, before -> after (x)"
                                         f" | p99 ms, before -> after" for r in runs for a in SUBJECTS[False]) + " |"]
    lines.append("| --- |" + " ---: |" * (2 * len(SUBJECTS[False]) * len(runs)))
    for w in [w for w in WORKLOADS if any(w in r["summary"] for r in runs)]:
        cells = []
        for r in runs:
            entry = r["summary"].get(w, {})
            for after, before in zip(SUBJECTS[False], SUBJECTS[True]):
                a, b = entry.get(after, {}), entry.get(before, {})
                if "rps" not in a or "rps" not in b:
                    cells += ["", ""]
                    continue
                cells.append(f"{b['rps']:.0f} -> {a['rps']:.0f} ({entry.get(f'{after}/{before}', 0):.2f}x)")
                cells.append(f"{b['p99_ms']:.0f} -> {a['p99_ms']:.0f}")
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
    parser.add_argument("--servers", default="tiddly,tiddly_reflect,reference,sandman2,restless")
    parser.add_argument("--before", action="store_true", help="the tables of the code before the change (run.py --before)")
    parser.add_argument("--change", action="store_true", help="each Tiddly before and after the change, side by side")
    args = parser.parse_args()
    runs = [json.loads(p.read_text()) for p in args.results]
    subjects = SUBJECTS[args.before]
    wanted = [{"tiddly": subjects[0], "tiddly_reflect": subjects[1]}.get(s, s) for s in args.servers.split(",")]
    servers = [s for s in wanted if any(s in e for r in runs for e in r["summary"].values())]
    if not set(subjects) & set(servers):
        sys.exit("the results have no Tiddly run to take ratios to" + (" (--before needs run.py --before)"
                                                                        if args.before else ""))
    first = runs[0]
    a, m = first["args"], first["machine"]
    shown = ",".join(s for s in args.servers.split(",") if s in a["servers"].split(","))
    print(f"`python bench/run.py --db {'|'.join(r['db'] for r in runs)} --seconds {a['seconds']} "
          f"--rounds {a['rounds']} --servers {shown}`: {a.get('http', 'gunicorn')}, {a['workers']} "
          f"workers x {a['threads']} threads, 8 keep-alive wrk connections, "
          f"{'medians of ' + str(a['rounds']) + ' rounds' if a['rounds'] > 1 else 'one round'}; "
          f"{m['cores']}-core {m['cpu']}, Python {m['python']} "
          f"({', '.join(p.name for p in args.results)}).\n")
    if args.change:
        print("Tiddly before and after the change, same run (req/s: medians, in brackets the median of same-round "
              "ratios; p99: medians):\n")
        print("\n".join(change_table(runs)) + "\n")
        return
    for metric, (title, _) in METRICS.items():
        print(f"{title[0].upper()}{title[1:]} (in brackets Tiddly's ratios to that server, --models then "
              "--reflect, same-round medians):\n")
        print("\n".join(table(runs, servers, metric, subjects)) + "\n")
    print("\n".join(reasons(runs, servers)))


if __name__ == "__main__":
    main()
