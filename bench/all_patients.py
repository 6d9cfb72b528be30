"""GET /get_all_patients over a long stay with large flow images: time, CPU and peak memory.

    python bench/all_patients.py [--db URL] [--readings 1000] [--image-bytes 30000] [--rounds 5]

One room whose patient holds ``--readings`` readings, each with a flow image of
``--image-bytes`` bytes (base64 in the database, as the clients send it). Three
ways to answer the original server's GET /get_all_patients, each a WSGI request
whose body is read to the end and hashed (the three must answer the same bytes):

- tiddly: the route as shipped (``tiddly.monitor.cpap``): the readings without
  their images, then the images a batch at a time, streamed.
- before: the route before issue 14, asked for the whole stay (``?readings=1000``):
  every column of every reading in one list, then ``jsonify``.
- seed: the original server: the room's row with each series a JSON array in a
  text column, ``json.loads`` of each, then ``jsonify``. (MariaDB cannot store
  that row when it exceeds ``max_allowed_packet``; the seed is then left out.)

Each measurement is its own process: a small warm-up request (connections,
imports), then one full request, timed (wall and process CPU) and its peak
resident memory taken as VmHWM minus the resident size before it. The variants
take turns, ``--rounds`` times; it prints the medians and the ratios to the seed
(or to ``before``). Default database: a fresh SQLite file; with --db, a scratch
database whose ``patients`` holds no room but the bench's (990101) and which the
bench gives the table ``bench_seed_patients`` (dropped at the end).
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flask import Flask, jsonify
from sqlalchemy import delete, insert, select
from werkzeug.test import EnvironBuilder

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from patients_append import SERIES, seed_metadata, seed_patients  # noqa: E402

from tiddly import create_app  # noqa: E402
from tiddly.config import Config  # noqa: E402
from tiddly.storage import Database  # noqa: E402
from tiddly.errors import ApiError  # noqa: E402
from tiddly.models import Base, Patient, PatientReading  # noqa: E402
from tiddly.monitor import patients  # noqa: E402

ROOM = 990101
VARIANTS = ("tiddly", "before", "seed")
ORIGINAL_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def main() -> int:
    args = _arguments()
    if args.measure:
        print(json.dumps(_measure(args.measure, args.db, args.readings)))
        return 0
    url = args.db or f"sqlite:///{Path(tempfile.mkdtemp(prefix='tiddly-bench-')) / 'patients.db'}"
    try:
        variants = _prepare(url, args.readings, args.image_bytes)
        results = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name in variants:
                results[name].append(_measure_in_a_process(name, url, args.readings))
    finally:
        db = Database(url)
        seed_metadata.drop_all(db.engine)
        db.dispose()
    return _report(url, args, results)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="SQLAlchemy URL of a scratch database (default: a new SQLite file)")
    parser.add_argument("--readings", type=int, default=1000, help="readings in the stay (default 1000)")
    parser.add_argument("--image-bytes", type=int, default=30_000, help="bytes of each flow image (default 30000)")
    parser.add_argument("--rounds", type=int, default=5, help="measurements per variant (default 5)")
    parser.add_argument("--measure", choices=VARIANTS, help=argparse.SUPPRESS)  # one measurement, in a child
    return parser.parse_args()


# -- setting up ------------------------------------------------------------------------

def _prepare(url: str, readings: int, image_bytes: int) -> list[str]:
    """The room and its readings, and the seed's row; returns the variants that can run."""
    db = Database(url)
    try:
        Base.metadata.create_all(db.engine, tables=[Patient.__table__, PatientReading.__table__])
        with db.session() as session:
            others = session.scalars(select(Patient.room_number).where(Patient.room_number != ROOM)).all()
        if others:
            raise SystemExit(f"the database has other rooms ({others[:5]}...): use a scratch database")
        with db.session(write=True) as session:
            session.execute(delete(PatientReading).where(PatientReading.room_number == ROOM))
            session.execute(delete(Patient).where(Patient.room_number == ROOM))
            patients.upsert_patient(session, {"room_number": ROOM, "patient_mrn": ROOM, "patient_name": "Bench"})
        rows = [_reading(n, image_bytes) for n in range(readings)]
        for start in range(0, len(rows), 100):
            with db.session(write=True) as session:
                session.execute(insert(PatientReading.__table__), rows[start:start + 100])
        seed_metadata.drop_all(db.engine)
        seed_metadata.create_all(db.engine)
        series = {name: [row[name] for row in rows] for name in SERIES}
        series["timestamp"] = [t.strftime(ORIGINAL_TIME_FORMAT) for t in series["timestamp"]]
        try:
            with db.session(write=True) as session:
                session.execute(insert(seed_patients).values(
                    room_number=ROOM, patient_mrn=ROOM, patient_name="Bench",
                    **{name: json.dumps(values) for name, values in series.items()}))
        except ApiError as exc:  # MariaDB: a row beyond max_allowed_packet drops the connection
            print(f"seed left out: the database refused its {len(json.dumps(series)) / 1e6:.0f} MB row ({exc})")
            return ["tiddly", "before"]
        return list(VARIANTS)
    finally:
        db.dispose()


def _reading(n: int, image_bytes: int) -> dict:
    stamp = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=30 * n)
    image = base64.b64encode(os.urandom(image_bytes)).decode("ascii")
    return {"room_number": ROOM, "patient_mrn": ROOM, "timestamp": stamp, "CPAP_pressure": 4 + n % 20,
            "breath_rate": 12 + n / 7, "apnea_count": n % 4, "flow_image": image}


# -- one measurement, in its own process ---------------------------------------------------

def _measure_in_a_process(name: str, url: str, readings: int) -> dict:
    command = [sys.executable, __file__, "--measure", name, "--db", url, "--readings", str(readings)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def _measure(name: str, url: str, readings: int) -> dict:
    app, path, small = _app(name, url, readings)
    _request(app, small)  # warm-up: connections, imports, caches
    rss_before = _status_kb("VmRSS")
    wall, cpu = time.perf_counter(), time.process_time()
    size, digest = _request(app, path)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = _status_kb("VmHWM") - rss_before
    return {"wall_ms": wall * 1000, "cpu_ms": cpu * 1000, "peak_mb": peak / 1024, "bytes": size, "sha256": digest}


def _app(name: str, url: str, readings: int):
    """The WSGI app, the measured path and a small warm-up path."""
    if name == "tiddly":
        return create_app(Config(database_url=url)), "/get_all_patients", \
            "/get_all_patients?readings=1"
    db = Database(url)
    app = Flask("baseline")
    app.add_url_rule("/before", "before", lambda: jsonify(_before(db, readings)))
    app.add_url_rule("/seed", "seed", lambda: jsonify(_seed(db)))
    app.add_url_rule("/warm", "warm", lambda: jsonify(_before(db, 1) if name == "before" else _seed(db, ROOM + 1)))
    return app, f"/{name}", "/warm"


def _request(app, path: str) -> tuple[int, str]:
    """The body's size and sha256, read chunk by chunk as a server would send it."""
    environ = EnvironBuilder(path=path).get_environ()
    statuses = []
    body = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    digest, size = hashlib.sha256(), 0
    try:
        for chunk in body:
            digest.update(chunk)
            size += len(chunk)
    finally:
        getattr(body, "close", lambda: None)()
    assert statuses and statuses[0].startswith("200"), statuses
    return size, digest.hexdigest()


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _before(db: Database, readings: int) -> list[dict]:
    """The route before issue 14 (patients.all_patient_views, then cpap._original_view)."""
    with db.session() as session:
        views = []
        for patient in patients.all_patients(session):
            rows = session.execute(
                select(PatientReading.id, PatientReading.timestamp, PatientReading.CPAP_pressure,
                       PatientReading.breath_rate, PatientReading.apnea_count, PatientReading.flow_image)
                .where(PatientReading.room_number == patient.room_number,
                       PatientReading.patient_mrn == patient.patient_mrn,
                       PatientReading.id > patient.readings_after_id)
                .order_by(PatientReading.id.desc()).limit(readings + 1)).all()
            shown = rows[:readings][::-1]
            views.append({
                "room_number": patient.room_number, "patient_mrn": patient.patient_mrn,
                "patient_name": patient.patient_name or "Not provided",
                "CPAP_pressure": [r.CPAP_pressure for r in shown], "breath_rate": [r.breath_rate for r in shown],
                "apnea_count": [r.apnea_count for r in shown], "flow_image": [r.flow_image or "" for r in shown],
                "timestamp": [r.timestamp.strftime(ORIGINAL_TIME_FORMAT) for r in shown]})
        return views


def _seed(db: Database, room: int = ROOM) -> list[dict]:
    """The original server's get_all_patients_driver over its JSON-array columns."""
    with db.session() as session:
        rows = session.execute(select(seed_patients).where(seed_patients.c.room_number == room)).mappings().all()
        return [{"room_number": row["room_number"], "patient_mrn": row["patient_mrn"],
                 "patient_name": row["patient_name"] or "Not provided",
                 **{name: json.loads(row[name]) if row[name] else [] for name in SERIES}} for row in rows]


# -- the report ----------------------------------------------------------------------------

def _report(url: str, args, results: dict[str, list[dict]]) -> int:
    digests = {m["sha256"] for runs in results.values() for m in runs}
    size = results["tiddly"][0]["bytes"]
    print(f"GET /get_all_patients: one stay of {args.readings:,} readings, {args.image_bytes:,}-byte flow images "
          f"({size / 1e6:.1f} MB answer)")
    print(f"database {url.split('@')[-1]}; medians of {args.rounds} runs, each the first full request "
          f"of a warmed process")
    baseline = "seed" if "seed" in results else "before"
    medians = {name: {key: statistics.median(m[key] for m in runs) for key in ("wall_ms", "cpu_ms", "peak_mb")}
               for name, runs in results.items()}
    print(f"{'':8}{'wall':>12}{'CPU':>12}{'peak RSS':>12}   vs {baseline}: wall, CPU, peak")
    for name, m in medians.items():
        base = medians[baseline]
        print(f"{name:8}{m['wall_ms']:>9.1f} ms{m['cpu_ms']:>9.1f} ms{m['peak_mb']:>9.1f} MB"
              f"   {m['wall_ms'] / base['wall_ms']:.2f}x, {m['cpu_ms'] / base['cpu_ms']:.2f}x, "
              f"{m['peak_mb'] / max(base['peak_mb'], 0.1):.2f}x")
    same = len(digests) == 1
    print("answers: " + ("the same bytes from every variant" if same else f"DIFFER ({len(digests)} digests)"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
