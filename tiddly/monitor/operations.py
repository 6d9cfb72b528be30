"""The patient monitor's operations, as typed as the generic ones (``services/plan.py``), with
the runners the app's executor runs them with. Every route of the monitor (``PUT /patients``,
the original CPAP server's routes) produces one of these; the executor decides who may run
it from the tables it names, like any other operation. Pure: no Flask.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from tiddly.models import Patient, PatientReading
from tiddly.monitor import patients
from tiddly.services.plan import Change, Written

PATIENTS, READINGS = Patient.__tablename__, PatientReading.__tablename__
BOTH = frozenset({PATIENTS, READINGS})


@dataclass(frozen=True)
class SavePatient:
    """Create, update or turn over the room of a checked body; the view answers ``readings`` readings."""
    data: patients.PatientInput
    readings: int = patients.DEFAULT_VIEW_READINGS
    reads = BOTH
    writes = BOTH


@dataclass(frozen=True)
class PrescribePressure:
    """Store a room's prescribed CPAP pressure (``Written.count`` 0: no patient in the room)."""
    room_number: int
    pressure: int
    reads = frozenset()
    writes = frozenset({PATIENTS})


@dataclass(frozen=True)
class FindPatient:
    """The room's patient (its row), or None."""
    room_number: int
    reads = frozenset({PATIENTS})
    writes = frozenset()


@dataclass(frozen=True)
class ListPatients:
    """Every room's whole stay, as the original server listed it (streamed by its route)."""
    reads = BOTH
    writes = frozenset()


def save(session: Session, op: SavePatient, _context=None) -> Written:
    status, view, reading = patients.save_patient(session, op.data, op.readings)
    room = (op.data.room_number,)
    changes = [Change(PATIENTS, "insert" if status == 201 else "update", room)]
    if reading is not None:
        changes.append(Change(READINGS, "insert", (reading,)))
    return Written([room], [view], 1, status == 201, changes)


def prescribe(session: Session, op: PrescribePressure, _context=None) -> Written:
    if not patients.prescribe_pressure(session, op.room_number, op.pressure):
        return Written()
    room = (op.room_number,)
    return Written([room], count=1, changes=[Change(PATIENTS, "update", room)])


def find(session: Session, op: FindPatient, _context=None) -> Patient | None:
    return patients.find_patient(session, op.room_number)


RUNNERS = {SavePatient: save, PrescribePressure: prescribe, FindPatient: find}
