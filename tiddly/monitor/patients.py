"""The patient upsert (DESIGN section 6): a room's occupant and its CPAP readings. Pure: no Flask.

``upsert_patient(session, body)`` checks a body with the original CPAP server's
keys and, in the caller's transaction, creates the room's patient (201),
updates it and appends a reading for the same MRN (200), or turns the room
over to a new MRN (200). Readings are rows of ``patient_readings``, one per
reading, never updated or deleted: a turnover only changes who occupies the
room, and the previous patient's readings stay retrievable by MRN.

Concurrent writes to one room serialize on the room's row: every write starts
with one statement that inserts the row or, when it exists, bumps its version,
which locks it (PostgreSQL and MariaDB row locks; SQLite's write transaction
holds the whole database). Two requests racing to create an empty room meet
on that statement: the second waits for the first, then updates the row the
first created. Nothing raises, so neither answers 500.

The patient view carries the seed's arrays (``CPAP_pressure``, ``breath_rate``,
``apnea_count``, ``flow_image``, ``timestamp``) for the current stay, oldest
first, capped at the most recent ``DEFAULT_VIEW_READINGS`` readings; older
ones page through ``GET /patient_readings`` (see docs/patients.md).

The original server's routes (``cpap.py``) list a stay differently: all of it
by default, and only the readings its arrays could hold (``original_readings``),
with the flow images read a batch at a time (``flow_images``).
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from sqlalchemy import Row, func, select, update
from sqlalchemy.orm import Session

from tiddly.errors import BadValue, MissingColumn, UnknownColumn
from tiddly.models import Patient, PatientReading
from tiddly.storage import insert_or_update

DEFAULT_VIEW_READINGS = 20    # readings in a patient view unless asked (?readings=N): flow images are large
MAX_VIEW_READINGS = 1000
IMAGE_BATCH = 50   # flow images per query when a list streams them (30 KB plots: 2 MB of base64)
_MAX_INT32 = 2**31 - 1
_MAX_INT64 = 2**63 - 1
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


# -- the body -------------------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    CPAP_pressure: int | None   # None only through POST /add_patient (parse_patient's original_rules)
    breath_rate: float
    apnea_count: int | None
    flow_image: str | None


@dataclass(frozen=True)
class PatientInput:
    room_number: int
    patient_mrn: int
    patient_name: str | None
    reading: Reading | None


@dataclass(frozen=True)
class Field:
    key: str
    kind: str            # "integer", "number" or "string": what the value must be
    parse: Callable[[Any], Any]  # raises ValueError or TypeError on a bad value
    expects: str         # for the error message
    required: bool = False


def _integer(minimum: int, maximum: int) -> Callable[[Any], int]:
    """An int, an integral float, or a string of ASCII digits (the original clients send entry-box text)."""
    def parse(value: Any) -> int:
        if isinstance(value, str) and _DIGITS.fullmatch(value):
            number = int(value)
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            raise TypeError
        if not minimum <= number <= maximum:
            raise ValueError
        return number
    return parse


def _rate(value: Any) -> float:
    """A finite number >= 0, or a decimal string such as ``str(14.035)``; never "nan", "inf" or "-1"."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = float(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise TypeError
    if not math.isfinite(number) or number < 0:
        raise ValueError
    return number


def _name(value: Any) -> str:
    if not isinstance(value, str) or "\x00" in value or len(value) > 255:
        raise TypeError
    return value


def _base64(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError
    base64.b64decode(value, validate=True)  # raises binascii.Error (a ValueError)
    return value


# In the original server's order: its clients expect the first failure in this order.
FIELDS: tuple[Field, ...] = (
    Field("patient_mrn", "integer", _integer(1, _MAX_INT64), "a positive integer or a string of digits", True),
    Field("room_number", "integer", _integer(1, _MAX_INT32), "a positive integer or a string of digits", True),
    Field("patient_name", "string", _name, "a string of at most 255 characters"),
    Field("CPAP_pressure", "integer", _integer(0, _MAX_INT32), "a non-negative integer or a string of digits"),
    Field("breath_rate", "number", _rate, "a non-negative number or a numeric string"),
    Field("apnea_count", "integer", _integer(0, _MAX_INT32), "a non-negative integer or a string of digits"),
    Field("flow_image", "string", _base64, "a base64 string"),
)
FIELDS_BY_KEY = {f.key: f for f in FIELDS}


def parse_value(key: str, value: Any) -> Any:
    """One body value checked against its key's rules; a 400 naming the key when it fails."""
    spec = FIELDS_BY_KEY[key]
    if value is None:
        raise BadValue(f"'{key}' cannot be null; leave it out (or send \"\") when there is no value", key=key)
    try:
        return spec.parse(value)
    except (TypeError, ValueError, binascii.Error):
        raise BadValue(f"'{key}' must be {spec.expects}, got {_short(value)}", key=key) from None


def parse_patient(body: Any, original_rules: bool = False) -> PatientInput:
    """Check a body. ``""`` or an absent key means "not provided"; ``room_number`` and
    ``patient_mrn`` are required. ``original_rules``: the original POST /add_patient's, whose
    clients rely on them: every key present (possibly as ``""``); a measured reading whose
    pressure box was left empty is accepted (kept without a pressure, where the original
    dropped it); a reading with both a pressure and a breath rate needs its apnea count (the
    original failed without one)."""
    if not isinstance(body, dict):
        raise BadValue("the body must be a JSON object with the keys " + ", ".join(FIELDS_BY_KEY))
    values = {}
    for spec in FIELDS:  # in order: the first failure is the one reported
        if spec.key not in body and (spec.required or original_rules):
            raise MissingColumn(f"'{spec.key}' is required", key=spec.key)
        raw = body.get(spec.key, "")
        if raw == "" and spec.required:
            raise BadValue(f"'{spec.key}' is required: {spec.expects}, not \"\"", key=spec.key)
        if raw != "":
            values[spec.key] = parse_value(spec.key, raw)
    unknown = [k for k in body if k not in FIELDS_BY_KEY]
    if unknown:
        raise UnknownColumn(f"unknown key {_short(unknown[0])}; the keys are " + ", ".join(FIELDS_BY_KEY),
                            key=str(unknown[0]))
    return PatientInput(values["room_number"], values["patient_mrn"], values.get("patient_name"),
                        _reading(values, original_rules))


def _reading(values: dict, original_rules: bool) -> Reading | None:
    given = [k for k in ("CPAP_pressure", "breath_rate") if k in values]
    if original_rules and given == ["breath_rate"]:
        return Reading(None, values["breath_rate"], values.get("apnea_count"), values.get("flow_image"))
    if original_rules and len(given) == 2 and "apnea_count" not in values:
        raise BadValue("'apnea_count' is required with a reading: " + FIELDS_BY_KEY["apnea_count"].expects,
                       key="apnea_count")
    if len(given) == 1:
        other = "breath_rate" if given == ["CPAP_pressure"] else "CPAP_pressure"
        raise BadValue(f"a reading needs both CPAP_pressure and breath_rate: {given[0]} was given without {other}",
                       keys=["CPAP_pressure", "breath_rate"])
    if not given:
        extra = [k for k in ("apnea_count", "flow_image") if k in values]
        if extra:
            raise BadValue(f"{extra[0]} belongs to a reading: send it with CPAP_pressure and breath_rate",
                           keys=["CPAP_pressure", "breath_rate"])
        return None
    return Reading(values["CPAP_pressure"], values["breath_rate"], values.get("apnea_count"),
                   values.get("flow_image"))


def view_limit(raw: Any, default: int | None = DEFAULT_VIEW_READINGS) -> int | None:
    """How many readings a view carries: ``raw`` (from ``?readings=``) or ``default`` (None: all)."""
    if raw is None:
        return default
    text = str(raw)
    if not _DIGITS.fullmatch(text) or int(text) > MAX_VIEW_READINGS:
        raise BadValue(f"'readings' must be an integer from 0 to {MAX_VIEW_READINGS}, got {_short(raw)}",
                       key="readings")
    return int(text)


# -- writing ----------------------------------------------------------------------

def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def upsert_patient(session: Session, body: Any, readings: int = DEFAULT_VIEW_READINGS,
                   now: dt.datetime | None = None) -> tuple[int, dict]:
    """Create, update or turn over the body's room. Returns (201 or 200, the patient view)."""
    return apply_patient(session, parse_patient(body), readings, now)


def apply_patient(session: Session, data: PatientInput, readings: int = DEFAULT_VIEW_READINGS,
                  now: dt.datetime | None = None) -> tuple[int, dict]:
    """Write an already checked body, in the caller's transaction."""
    status, view, _reading = save_patient(session, data, readings, now)
    return status, view


def save_patient(session: Session, data: PatientInput, readings: int = DEFAULT_VIEW_READINGS,
                 now: dt.datetime | None = None) -> tuple[int, dict, int | None]:
    """``apply_patient``, and the id of the reading it appended (None: none)."""
    now = now or utcnow()
    patient, created = _claim_room(session, data, now)
    if created or patient.patient_mrn != data.patient_mrn:
        _admit(session, patient, data, now)
    elif data.patient_name is not None:
        patient.patient_name = data.patient_name
    reading = None
    if data.reading is not None:
        reading = PatientReading(room_number=data.room_number, patient_mrn=data.patient_mrn, timestamp=now,
                                 **vars(data.reading))
        session.add(reading)
    session.flush()
    return (201 if created else 200), patient_view(session, patient, readings), reading and reading.id


def _claim_room(session: Session, data: PatientInput, now: dt.datetime) -> tuple[Patient, bool]:
    """The room's row, locked for this transaction, created when the room is empty.

    A plain SELECT ... FOR UPDATE then INSERT would deadlock on MariaDB, whose locking
    read of a missing row takes a gap lock that the other racer's insert waits on.
    """
    table = Patient.__table__
    insert_or_update(session, table,
                     {"room_number": data.room_number, "patient_mrn": data.patient_mrn,
                      "patient_name": data.patient_name, "admitted_at": now, "updated_at": now,
                      "readings_after_id": 0, "version": 1},
                     keys=["room_number"], on_conflict={"version": table.c.version + 1, "updated_at": now})
    patient = session.scalars(
        select(Patient).where(Patient.room_number == data.room_number)
        .with_for_update().execution_options(populate_existing=True)
    ).one()
    return patient, patient.version == 1


def _admit(session: Session, patient: Patient, data: PatientInput, now: dt.datetime) -> None:
    """The room's new occupant (or its first): a fresh stay. The old one's readings stay stored."""
    patient.patient_mrn = data.patient_mrn
    patient.patient_name = data.patient_name
    patient.prescribed_cpap_pressure = None  # a prescription belongs to the patient it was made for
    patient.admitted_at = now
    patient.readings_after_id = session.execute(
        select(func.coalesce(func.max(PatientReading.id), 0))
        .where(PatientReading.room_number == data.room_number, PatientReading.patient_mrn == data.patient_mrn)
    ).scalar_one()


def prescribe_pressure(session: Session, room_number: int, pressure: int, now: dt.datetime | None = None) -> bool:
    """Store the room's prescribed CPAP pressure; False when the room has no patient."""
    result = session.execute(
        update(Patient).where(Patient.room_number == room_number)
        .values(prescribed_cpap_pressure=pressure, updated_at=now or utcnow())
    )
    return result.rowcount > 0


# -- reading ------------------------------------------------------------------------

def find_patient(session: Session, room_number: int) -> Patient | None:
    return session.get(Patient, room_number)


def _stay(patient: Patient) -> tuple:
    """The readings of the patient's current stay: the room's, under its MRN, since admission."""
    return (PatientReading.room_number == patient.room_number, PatientReading.patient_mrn == patient.patient_mrn,
            PatientReading.id > patient.readings_after_id)


def patient_view(session: Session, patient: Patient, readings: int = DEFAULT_VIEW_READINGS) -> dict:
    """The patient and the latest ``readings`` readings of its stay as the seed's arrays, oldest first.

    ``older_readings`` says whether the stay has readings before those shown;
    ``reading_ids`` and ``readings_after_id`` page back to them through the endpoint.
    """
    rows = session.execute(
        select(PatientReading.id, PatientReading.timestamp, PatientReading.CPAP_pressure,
               PatientReading.breath_rate, PatientReading.apnea_count, PatientReading.flow_image)
        .where(*_stay(patient)).order_by(PatientReading.id.desc()).limit(readings + 1)
    ).all()
    shown = rows[:readings][::-1]
    return {
        "room_number": patient.room_number,
        "patient_mrn": patient.patient_mrn,
        "patient_name": patient.patient_name,
        "prescribed_cpap_pressure": patient.prescribed_cpap_pressure,
        "admitted_at": patient.admitted_at,
        "updated_at": patient.updated_at,
        "CPAP_pressure": [r.CPAP_pressure for r in shown],
        "breath_rate": [r.breath_rate for r in shown],
        "apnea_count": [r.apnea_count for r in shown],
        "flow_image": [r.flow_image for r in shown],
        "timestamp": [r.timestamp for r in shown],
        "reading_ids": [r.id for r in shown],
        "readings_after_id": patient.readings_after_id,
        "older_readings": len(rows) > readings,
    }


def all_patients(session: Session) -> list[Patient]:
    """Every occupied room's patient, by room number."""
    return list(session.scalars(select(Patient).order_by(Patient.room_number)))


# The original server's arrays held only readings with a pressure, a breath rate (never
# missing) and an apnea count; its clients compare and format every item as a number.
_SHOWN_BY_THE_ORIGINAL = (PatientReading.CPAP_pressure.is_not(None), PatientReading.apnea_count.is_not(None))


def original_readings(session: Session, patient: Patient, limit: int | None = None) -> list[Row]:
    """The stay's readings the original server's arrays could show, oldest first, the latest
    ``limit`` of them (None: all), without their flow images: ``flow_images`` reads those."""
    stmt = select(PatientReading.id, PatientReading.timestamp, PatientReading.CPAP_pressure,
                  PatientReading.breath_rate, PatientReading.apnea_count
                  ).where(*_stay(patient), *_SHOWN_BY_THE_ORIGINAL)
    if limit is None:
        return list(session.execute(stmt.order_by(PatientReading.id)))
    return list(session.execute(stmt.order_by(PatientReading.id.desc()).limit(limit)))[::-1]


def flow_images(session: Session, reading_ids: list[int]) -> Iterator[list[str | None]]:
    """The flow images of ``reading_ids``, in that order, ``IMAGE_BATCH`` per query: a long
    stay's images (tens of kilobytes each) are never all in memory at once."""
    for start in range(0, len(reading_ids), IMAGE_BATCH):
        batch = reading_ids[start:start + IMAGE_BATCH]
        rows = session.execute(
            select(PatientReading.id, PatientReading.flow_image).where(PatientReading.id.in_(batch)))
        images = {reading_id: image for reading_id, image in rows}
        yield [images[reading_id] for reading_id in batch]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
