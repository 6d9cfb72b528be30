"""Append latency of PUT /patients at 10 stored readings and at 10,000, beside the seed's way.

    python bench/patients_append.py [--db URL] [--appends N] [--small N] [--large N] [--image-bytes N]

Two rooms per side: one whose patient holds ``--small`` readings, one whose patient
holds ``--large``. Each append is one write transaction, timed from BEGIN to COMMIT:

- Tiddly: ``patients.upsert_patient`` (one row per reading; the response's view included),
  through ``Database.session(write=True)``, the request boundary ``PUT /patients`` uses.
- Seed: the original server's update, which keeps each series as a JSON array in a text
  column: read the row, decode five arrays, append, encode, write them back.

Each side's two cases are interleaved append by append so machine noise hits them alike. It prints
the median latency of each and the ratio large/small per side; the target is Tiddly's ratio
within 1.3x. Default database: a fresh SQLite file in a temporary directory. With --db, use a
scratch database: the bench writes rooms 990001-990004 (deleting their old rows first) and
creates, then drops, its table ``bench_seed_patients``.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.mysql import LONGTEXT

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tiddly.storage import Database  # noqa: E402
from tiddly.models import Base, Patient, PatientReading  # noqa: E402
from tiddly.monitor import patients  # noqa: E402

TARGET = 1.3
SMALL_ROOM, LARGE_ROOM, SEED_SMALL_ROOM, SEED_LARGE_ROOM = 990001, 990002, 990003, 990004
SERIES = ("CPAP_pressure", "breath_rate", "apnea_count", "flow_image", "timestamp")

seed_metadata = MetaData()
seed_patients = Table(  # the original server's PatientModel: lists as JSON text
    "bench_seed_patients", seed_metadata,
    Column("room_number", Integer, primary_key=True, autoincrement=False),
    Column("patient_mrn", Integer, nullable=False),
    Column("patient_name", String(255)),
    *(Column(name, Text().with_variant(LONGTEXT(), "mysql", "mariadb")) for name in SERIES),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)


def main() -> int:
    args = _arguments()
    url = args.db or f"sqlite:///{Path(tempfile.mkdtemp(prefix='tiddly-bench-')) / 'patients.db'}"
    db = Database(url)
    image = base64.b64encode(os.urandom(args.image_bytes)).decode("ascii")
    try:
        _prepare(db, args, image)
        timings = _measure(db, args.appends, image)
    finally:
        seed_metadata.drop_all(db.engine)
        db.dispose()
    _report(url, args, timings)
    tiddly_ratio = statistics.median(timings["tiddly large"]) / statistics.median(timings["tiddly small"])
    return 0 if tiddly_ratio <= TARGET else 1


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="SQLAlchemy URL of a scratch database (default: a new SQLite file)")
    parser.add_argument("--appends", type=int, default=100, help="timed appends per case (default 100)")
    parser.add_argument("--small", type=int, default=10, help="readings already stored, small case (default 10)")
    parser.add_argument("--large", type=int, default=10_000, help="readings already stored, large case")
    parser.add_argument("--image-bytes", type=int, default=1000,
                        help="bytes of flow image per reading before base64 (default 1000)")
    return parser.parse_args()


# -- setting up ------------------------------------------------------------------------

def _prepare(db: Database, args, image: str) -> None:
    Base.metadata.create_all(db.engine, tables=[Patient.__table__, PatientReading.__table__])
    seed_metadata.drop_all(db.engine)
    seed_metadata.create_all(db.engine)
    rooms = (SMALL_ROOM, LARGE_ROOM)
    with db.session(write=True) as session:
        session.execute(delete(PatientReading).where(PatientReading.room_number.in_(rooms)))
        session.execute(delete(Patient).where(Patient.room_number.in_(rooms)))
    for room, stored in ((SMALL_ROOM, args.small), (LARGE_ROOM, args.large)):
        with db.session(write=True) as session:
            patients.upsert_patient(session, {"room_number": room, "patient_mrn": room})
            rows = [_reading(room, n, image) for n in range(stored)]
            for start in range(0, len(rows), 1000):
                session.execute(insert(PatientReading.__table__), rows[start:start + 1000])
    with db.session(write=True) as session:
        for room, stored in ((SEED_SMALL_ROOM, args.small), (SEED_LARGE_ROOM, args.large)):
            series = _seed_series(stored, image)
            session.execute(insert(seed_patients).values(room_number=room, patient_mrn=room,
                                                         **{k: json.dumps(v) for k, v in series.items()}))


def _reading(room: int, n: int, image: str) -> dict:
    stamp = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=n)
    return {"room_number": room, "patient_mrn": room, "timestamp": stamp, "CPAP_pressure": 4 + n % 20,
            "breath_rate": 12.5, "apnea_count": n % 3, "flow_image": image}


def _seed_series(stored: int, image: str) -> dict:
    return {"CPAP_pressure": [4 + n % 20 for n in range(stored)], "breath_rate": [12.5] * stored,
            "apnea_count": [n % 3 for n in range(stored)], "flow_image": [image] * stored,
            "timestamp": ["2024-01-01 00:00:00"] * stored}


# -- one append each way ----------------------------------------------------------------

def _tiddly_append(db: Database, room: int, image: str) -> None:
    body = {"room_number": room, "patient_mrn": room, "CPAP_pressure": "12", "breath_rate": "14.035",
            "apnea_count": "1", "flow_image": image}
    with db.session(write=True) as session:
        patients.upsert_patient(session, body)


def _seed_append(db: Database, room: int, image: str) -> None:
    """What the original server's update_patient did for the same body."""
    reading = {"CPAP_pressure": 12, "breath_rate": 14.035, "apnea_count": 1, "flow_image": image,
               "timestamp": dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")}
    with db.session(write=True) as session:
        row = session.execute(select(seed_patients).where(seed_patients.c.room_number == room)).mappings().one()
        values = {}
        for name in SERIES:
            series = json.loads(row[name]) if row[name] else []
            series.append(reading[name])
            values[name] = json.dumps(series)
        session.execute(update(seed_patients).where(seed_patients.c.room_number == room).values(values))


def _measure(db: Database, appends: int, image: str) -> dict[str, list[float]]:
    cases = {
        "tiddly small": lambda: _tiddly_append(db, SMALL_ROOM, image),
        "tiddly large": lambda: _tiddly_append(db, LARGE_ROOM, image),
        "seed small": lambda: _seed_append(db, SEED_SMALL_ROOM, image),
        "seed large": lambda: _seed_append(db, SEED_LARGE_ROOM, image),
    }
    for run in cases.values():  # warm up: connections, statement caches
        for _ in range(3):
            run()
    timings: dict[str, list[float]] = {name: [] for name in cases}
    # One side after the other (the seed's large rewrites would slow whatever follows them),
    # each side's two cases interleaved, taking turns to go first.
    for side in ("tiddly", "seed"):
        pair = [f"{side} small", f"{side} large"]
        for turn in range(appends):
            for name in pair if turn % 2 == 0 else pair[::-1]:
                started = time.perf_counter()
                cases[name]()
                timings[name].append(time.perf_counter() - started)
    return timings


def _report(url: str, args, timings: dict[str, list[float]]) -> None:
    medians = {name: statistics.median(values) * 1000 for name, values in timings.items()}
    print(f"PUT /patients append latency: median of {args.appends} appends per case, one write transaction each")
    print(f"database {url.split('@')[-1]}; flow image {args.image_bytes} bytes per reading")
    print(f"{'':30}{'at ' + format(args.small, ','):>14}{'at ' + format(args.large, ','):>14}{'ratio':>10}")
    for side, label in (("tiddly", "Tiddly (one row per reading)"), ("seed", "seed (JSON arrays in text)")):
        small, large = medians[f"{side} small"], medians[f"{side} large"]
        print(f"{label:30}{small:>11.3f} ms{large:>11.3f} ms{large / small:>9.2f}x")
    ratio = medians["tiddly large"] / medians["tiddly small"]
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"target: Tiddly at {args.large:,} within {TARGET}x of at {args.small:,}: {verdict} ({ratio:.2f}x)")


if __name__ == "__main__":
    sys.exit(main())
