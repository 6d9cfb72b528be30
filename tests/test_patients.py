"""PUT /patients (DESIGN section 6): validation, create/update/turnover, readings, atomicity.

Every test runs on SQLite, PostgreSQL and MariaDB (the db_url matrix).
"""
from __future__ import annotations

import json

import pytest
from envelope import assert_error, ok
from sqlalchemy import create_engine, func, select

from tiddly.errors import Conflict
from tiddly.models import Patient, PatientReading
from tiddly.monitor import patients

ROOM, MRN = 101, 12345
IMAGE = "aGVsbG8gd29ybGQ="  # base64 of b"hello world"


@pytest.fixture
def engine(db_url):
    """A separate engine for looking at what the database really holds."""
    engine = create_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(app):
    return app.extensions["tiddly"].db


def count(engine, model, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def put(client, **body):
    return client.put("/patients", json=body)


def readings_by_mrn(client, mrn: int) -> list[dict]:
    query = {"where": json.dumps({"patient_mrn": mrn}), "orderby": "timestamp, id"}
    return ok(client.get("/patient_readings", query_string=query))["data"]


# -- validation: every case of issue 3 item 2, none may be a 500 -------------------------

BASE = {"room_number": ROOM, "patient_mrn": MRN}

# (case, body changes, expected code, the key the error names); None removes the key
REJECTED = [
    ("mrn true", {"patient_mrn": True}, "bad_value", "patient_mrn"),
    ("mrn false", {"patient_mrn": False}, "bad_value", "patient_mrn"),
    ("room true", {"room_number": True}, "bad_value", "room_number"),
    ("pressure true", {"CPAP_pressure": True, "breath_rate": 14}, "bad_value", "CPAP_pressure"),
    ("breath rate true", {"CPAP_pressure": 12, "breath_rate": True}, "bad_value", "breath_rate"),
    ("apnea false", {"CPAP_pressure": 12, "breath_rate": 14, "apnea_count": False}, "bad_value", "apnea_count"),
    ("mrn one half", {"patient_mrn": "½"}, "bad_value", "patient_mrn"),
    ("room one half", {"room_number": "½"}, "bad_value", "room_number"),
    ("pressure one half", {"CPAP_pressure": "½", "breath_rate": 14}, "bad_value", "CPAP_pressure"),
    ("breath rate one half", {"CPAP_pressure": 12, "breath_rate": "½"}, "bad_value", "breath_rate"),
    ("apnea superscript two", {"CPAP_pressure": 12, "breath_rate": 14, "apnea_count": "²"}, "bad_value",
     "apnea_count"),
    ("mrn -1 text", {"patient_mrn": "-1"}, "bad_value", "patient_mrn"),
    ("mrn -1", {"patient_mrn": -1}, "bad_value", "patient_mrn"),
    ("room -1 text", {"room_number": "-1"}, "bad_value", "room_number"),
    ("room 0", {"room_number": 0}, "bad_value", "room_number"),
    ("pressure -1 text", {"CPAP_pressure": "-1", "breath_rate": 14}, "bad_value", "CPAP_pressure"),
    ("pressure -1", {"CPAP_pressure": -1, "breath_rate": 14}, "bad_value", "CPAP_pressure"),
    ("breath rate -1 text", {"CPAP_pressure": 12, "breath_rate": "-1"}, "bad_value", "breath_rate"),
    ("apnea -1 text", {"CPAP_pressure": 12, "breath_rate": 14, "apnea_count": "-1"}, "bad_value", "apnea_count"),
    ("breath rate nan", {"CPAP_pressure": 12, "breath_rate": "nan"}, "bad_value", "breath_rate"),
    ("breath rate NaN", {"CPAP_pressure": 12, "breath_rate": "NaN"}, "bad_value", "breath_rate"),
    ("breath rate inf", {"CPAP_pressure": 12, "breath_rate": "inf"}, "bad_value", "breath_rate"),
    ("breath rate 1e999", {"CPAP_pressure": 12, "breath_rate": "1e999"}, "bad_value", "breath_rate"),
    ("pressure nan", {"CPAP_pressure": "nan", "breath_rate": 14}, "bad_value", "CPAP_pressure"),
    ("breath rate not measured", {"CPAP_pressure": 12, "breath_rate": "Not measured"}, "bad_value", "breath_rate"),
    ("apnea not measured", {"CPAP_pressure": 12, "breath_rate": 14, "apnea_count": "Not measured"}, "bad_value",
     "apnea_count"),
    ("pressure not measured", {"CPAP_pressure": "Not measured", "breath_rate": 14}, "bad_value", "CPAP_pressure"),
    ("mrn null", {"patient_mrn": None}, "bad_value", "patient_mrn"),
    ("room null", {"room_number": None}, "bad_value", "room_number"),
    ("name null", {"patient_name": None}, "bad_value", "patient_name"),
    ("pressure null", {"CPAP_pressure": None, "breath_rate": 14}, "bad_value", "CPAP_pressure"),
    ("breath rate null", {"CPAP_pressure": 12, "breath_rate": None}, "bad_value", "breath_rate"),
    ("apnea null", {"CPAP_pressure": 12, "breath_rate": 14, "apnea_count": None}, "bad_value", "apnea_count"),
    ("image null", {"CPAP_pressure": 12, "breath_rate": 14, "flow_image": None}, "bad_value", "flow_image"),
    ("mrn list", {"patient_mrn": [MRN]}, "bad_value", "patient_mrn"),
    ("room empty list", {"room_number": []}, "bad_value", "room_number"),
    ("pressure list", {"CPAP_pressure": [12], "breath_rate": 14}, "bad_value", "CPAP_pressure"),
    ("breath rate list", {"CPAP_pressure": 12, "breath_rate": [14.0]}, "bad_value", "breath_rate"),
    ("name list", {"patient_name": ["Ann"]}, "bad_value", "patient_name"),
    ("image list", {"CPAP_pressure": 12, "breath_rate": 14, "flow_image": [IMAGE]}, "bad_value", "flow_image"),
    ("pressure object", {"CPAP_pressure": {"v": 12}, "breath_rate": 14}, "bad_value", "CPAP_pressure"),
    ("room empty string", {"room_number": ""}, "bad_value", "room_number"),
    ("mrn empty string", {"patient_mrn": ""}, "bad_value", "patient_mrn"),
    ("room missing", {"room_number": None}, "missing_column", "room_number"),
    ("mrn missing", {"patient_mrn": None}, "missing_column", "patient_mrn"),
    ("pressure fraction", {"CPAP_pressure": 12.5, "breath_rate": 14}, "bad_value", "CPAP_pressure"),
    ("pressure fraction text", {"CPAP_pressure": "12.5", "breath_rate": 14}, "bad_value", "CPAP_pressure"),
    ("pressure padded text", {"CPAP_pressure": " 12", "breath_rate": 14}, "bad_value", "CPAP_pressure"),
    ("pressure plus sign", {"CPAP_pressure": "+12", "breath_rate": 14}, "bad_value", "CPAP_pressure"),
    ("pressure too big", {"CPAP_pressure": 2**31, "breath_rate": 14}, "bad_value", "CPAP_pressure"),
    ("mrn too big", {"patient_mrn": 2**63}, "bad_value", "patient_mrn"),
    ("room too big", {"room_number": "99999999999"}, "bad_value", "room_number"),
    ("name a number", {"patient_name": 7}, "bad_value", "patient_name"),
    ("name too long", {"patient_name": "x" * 256}, "bad_value", "patient_name"),
    ("image not base64", {"CPAP_pressure": 12, "breath_rate": 14, "flow_image": "not base64!"}, "bad_value",
     "flow_image"),
    ("image a number", {"CPAP_pressure": 12, "breath_rate": 14, "flow_image": 5}, "bad_value", "flow_image"),
    ("unknown key", {"temperature": 37}, "unknown_column", "temperature"),
]

# A half reading names both keys (details.keys), not one.
HALF_READINGS = [
    ("pressure without breath rate", {"CPAP_pressure": 12}),
    ("breath rate without pressure", {"breath_rate": 14.2}),
    ("pressure with empty breath rate", {"CPAP_pressure": "12", "breath_rate": ""}),
    ("breath rate with empty pressure", {"CPAP_pressure": "", "breath_rate": "14.2"}),
    ("apnea count alone", {"apnea_count": 2}),
    ("image alone", {"flow_image": IMAGE}),
]

# (case, body changes, the first reading stored: (pressure, breath rate, apnea, image), or None)
ACCEPTED = [
    ("ints", {"CPAP_pressure": 12, "breath_rate": 14, "apnea_count": 2}, (12, 14.0, 2, None)),
    ("numeric strings", {"patient_mrn": str(MRN), "room_number": str(ROOM), "CPAP_pressure": "12",
                         "breath_rate": "14.035", "apnea_count": "3"}, (12, 14.035, 3, None)),
    ("desktop client text", {"CPAP_pressure": "12", "breath_rate": str(14.035087719298245), "apnea_count": "0",
                             "flow_image": IMAGE}, (12, 14.035087719298245, 0, IMAGE)),
    ("streamlit client numbers", {"CPAP_pressure": "9", "breath_rate": 16.25, "apnea_count": 4},
     (9, 16.25, 4, None)),
    ("integral float", {"CPAP_pressure": 12.0, "breath_rate": 14}, (12, 14.0, None, None)),
    ("exponent text", {"CPAP_pressure": "4", "breath_rate": "1e-05"}, (4, 1e-05, None, None)),
    ("leading zeros", {"patient_mrn": "0012345", "CPAP_pressure": "07", "breath_rate": "0"}, (7, 0.0, None, None)),
    ("empty strings mean not provided", {"patient_name": "", "CPAP_pressure": "", "breath_rate": "",
                                         "apnea_count": "", "flow_image": ""}, None),
    ("only the required keys", {}, None),
    ("name only", {"patient_name": "Ann"}, None),
]


def _body(changes: dict, removed_as_missing: bool) -> dict:
    body = {**BASE, **changes}
    if removed_as_missing:
        body = {k: v for k, v in body.items() if v is not None}
    return body


def test_every_rejected_body_is_a_400_naming_its_key_and_writes_nothing(client, engine):
    problems = []
    for case, changes, code, key in REJECTED:
        response = put(client, **_body(changes, code == "missing_column"))
        body = response.get_json()
        if response.status_code != 400 or body.get("code") != code:
            problems.append(f"{case}: {response.status_code} {body}")
        elif body["details"].get("key") != key or key not in body["error"]:
            problems.append(f"{case}: the error does not name {key!r}: {body}")
    assert not problems, "\n".join(problems)
    assert count(engine, Patient) == 0 and count(engine, PatientReading) == 0


def test_a_half_reading_is_a_400_not_a_silent_drop(client, engine):
    for case, changes in HALF_READINGS:
        body = assert_error(put(client, **BASE, **changes), 400, "bad_value")
        assert body["details"]["keys"] == ["CPAP_pressure", "breath_rate"], case
    # also for a patient already in the room: nothing changes
    ok(put(client, **BASE, patient_name="Ann"), 201)
    assert_error(put(client, **BASE, patient_name="Bob", CPAP_pressure=12), 400, "bad_value")
    assert ok(put(client, **BASE))["data"]["patient_name"] == "Ann"
    assert count(engine, PatientReading) == 0


@pytest.mark.parametrize("case, changes, reading", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted_bodies_create_the_patient(client, case, changes, reading):
    data = ok(put(client, **_body(changes, False)), 201)["data"]
    assert (data["room_number"], data["patient_mrn"]) == (ROOM, MRN)
    stored = list(zip(data["CPAP_pressure"], data["breath_rate"], data["apnea_count"], data["flow_image"]))
    assert stored == ([reading] if reading else [])
    assert len(data["timestamp"]) == len(stored)


def test_body_must_be_an_object(client):
    for raw in ("[]", '"room 101"', "17", "null"):
        response = client.put("/patients", data=raw, content_type="application/json")
        assert_error(response, 400, "bad_value")
    assert_error(client.put("/patients", data="{", content_type="application/json"), 400, "bad_json")
    assert_error(client.put("/patients?sort=name", json=BASE), 400, "bad_query")
    assert_error(client.put("/patients?readings=-1", json=BASE), 400, "bad_value")


# -- create, update, turnover ---------------------------------------------------------------

def test_create_then_update_appends_timestamped_readings(client, engine):
    created = ok(put(client, **BASE, patient_name="Ann", CPAP_pressure="10", breath_rate="12.5",
                     apnea_count="1", flow_image=IMAGE), 201)
    assert created["id"] == ROOM
    data = created["data"]
    assert data["patient_name"] == "Ann" and data["prescribed_cpap_pressure"] is None
    assert (data["CPAP_pressure"], data["breath_rate"], data["apnea_count"]) == ([10], [12.5], [1])
    assert data["timestamp"][0].endswith("+00:00")  # server time, in UTC

    # same MRN (as a string this time): the name changes, a reading is appended, 200
    updated = ok(put(client, room_number=ROOM, patient_mrn=str(MRN), patient_name="Ann Lee",
                     CPAP_pressure=11, breath_rate=13.0), 200)["data"]
    assert updated["patient_name"] == "Ann Lee" and updated["patient_mrn"] == MRN
    assert updated["CPAP_pressure"] == [10, 11] and updated["breath_rate"] == [12.5, 13.0]
    assert updated["apnea_count"] == [1, None] and updated["flow_image"] == [IMAGE, None]
    assert updated["timestamp"][0] <= updated["timestamp"][1]
    assert updated["admitted_at"] == data["admitted_at"]

    # no name and no reading: nothing changes but the update time
    same = ok(put(client, **BASE), 200)["data"]
    assert same["patient_name"] == "Ann Lee" and same["CPAP_pressure"] == [10, 11]
    assert count(engine, Patient) == 1 and count(engine, PatientReading) == 2


def test_turnover_replaces_the_occupant_and_keeps_the_old_readings(client, engine):
    ok(put(client, **BASE, patient_name="Ann", CPAP_pressure=10, breath_rate=12), 201)
    ok(put(client, **BASE, CPAP_pressure=11, breath_rate=13), 200)
    assert client.get(f"/new_cpap_pressure/{ROOM}/18").status_code == 200  # a prescription for Ann

    turned = ok(put(client, room_number=ROOM, patient_mrn=777, CPAP_pressure=5, breath_rate=20), 200)["data"]
    assert (turned["patient_mrn"], turned["patient_name"]) == (777, None)  # Ann's name does not carry over
    assert turned["prescribed_cpap_pressure"] is None                      # nor her prescription
    assert turned["CPAP_pressure"] == [5]                                  # the room's view starts fresh
    assert count(engine, Patient) == 1

    # Ann's readings are still stored, and reachable by MRN through the generic endpoint
    ann = readings_by_mrn(client, MRN)
    assert [(r["room_number"], r["CPAP_pressure"]) for r in ann] == [(ROOM, 10), (ROOM, 11)]
    assert [r["CPAP_pressure"] for r in readings_by_mrn(client, 777)] == [5]
    by_room = ok(client.get("/patient_readings", query_string={
        "where": json.dumps({"room_number": ROOM}), "orderby": "timestamp desc", "limit": "2"}))["data"]
    assert [r["patient_mrn"] for r in by_room] == [777, MRN]


def test_a_returning_patient_gets_a_fresh_view_and_keeps_the_history(client):
    ok(put(client, **BASE, CPAP_pressure=10, breath_rate=12), 201)
    ok(put(client, room_number=ROOM, patient_mrn=777), 200)
    back = ok(put(client, **BASE, CPAP_pressure=14, breath_rate=15), 200)["data"]
    assert back["CPAP_pressure"] == [14] and back["readings_after_id"] >= 1
    assert [r["CPAP_pressure"] for r in readings_by_mrn(client, MRN)] == [10, 14]


def test_rooms_are_independent(client):
    ok(put(client, **BASE, CPAP_pressure=10, breath_rate=12), 201)
    ok(put(client, room_number=102, patient_mrn=MRN + 1, CPAP_pressure=7, breath_rate=9), 201)
    assert ok(put(client, **BASE))["data"]["CPAP_pressure"] == [10]
    # the same MRN in another room is another stay (a move): each room shows its own readings
    moved = ok(put(client, room_number=103, patient_mrn=MRN, CPAP_pressure=8, breath_rate=9), 201)["data"]
    assert moved["CPAP_pressure"] == [8]


# -- the view pages long histories ------------------------------------------------------

def test_the_view_shows_the_latest_readings_and_pages_back_through_the_endpoint(client):
    for pressure in range(4, 11):  # 7 readings
        put(client, **BASE, CPAP_pressure=pressure, breath_rate=10)
    view = ok(client.put("/patients?readings=3", json=BASE))["data"]
    assert view["CPAP_pressure"] == [8, 9, 10] and view["older_readings"] is True
    older = ok(client.get("/patient_readings", query_string={
        "where": json.dumps({"room_number": ROOM, "patient_mrn": MRN,
                             "id": {"gt": view["readings_after_id"], "lt": view["reading_ids"][0]}}),
        "orderby": "id desc", "limit": "3"}))["data"]
    assert [r["CPAP_pressure"] for r in older] == [7, 6, 5]
    everything = ok(client.put("/patients?readings=7", json=BASE))["data"]
    assert everything["CPAP_pressure"] == list(range(4, 11)) and everything["older_readings"] is False
    assert ok(client.put("/patients?readings=0", json=BASE))["data"]["CPAP_pressure"] == []
    assert patients.DEFAULT_VIEW_READINGS == 20
    assert len(ok(put(client, **BASE))["data"]["reading_ids"]) == 7


# -- the generic endpoint: readings read-only, patients written only by the upsert ---------

def test_generic_writes_cannot_bypass_the_upsert(client, engine):
    ok(put(client, **BASE, CPAP_pressure=10, breath_rate=12), 201)
    reading_id = readings_by_mrn(client, MRN)[0]["id"]
    attempts = [
        client.post("/patient_readings", json={"room_number": ROOM, "patient_mrn": 1, "CPAP_pressure": 1,
                                               "breath_rate": 1, "timestamp": "2024-01-01T00:00:00"}),
        client.patch(f"/patient_readings/{reading_id}", json={"CPAP_pressure": 99}),
        client.delete(f"/patient_readings/{reading_id}"),
        client.delete("/patient_readings", json={"where": {"patient_mrn": MRN}}),
        client.post("/patients", json={"room_number": 102, "patient_mrn": 5}),
        client.patch(f"/patients/{ROOM}", json={"patient_mrn": 5}),
        client.put(f"/patients/{ROOM}", json={"patient_mrn": 5}),
        client.delete(f"/patients/{ROOM}"),
    ]
    for response in attempts:
        assert_error(response, 405, "method_not_allowed")
    assert "PUT" in attempts[4].headers["Allow"]
    assert ok(client.get(f"/patients/{ROOM}"))["data"]["patient_mrn"] == MRN
    assert ok(client.get(f"/patient_readings/{reading_id}"))["data"]["CPAP_pressure"] == 10
    assert count(engine, PatientReading) == 1


# -- a failure in the middle of a turnover leaves the old patient intact -------------------

class Crash(Exception):
    pass


def _seed_ann(client):
    ok(put(client, **BASE, patient_name="Ann", CPAP_pressure=10, breath_rate=12), 201)
    assert client.get(f"/new_cpap_pressure/{ROOM}/18").status_code == 200


def _assert_ann_intact(client, engine):
    data = ok(put(client, **BASE))["data"]
    assert (data["patient_mrn"], data["patient_name"], data["prescribed_cpap_pressure"]) == (MRN, "Ann", 18)
    assert data["CPAP_pressure"] == [10]
    assert count(engine, PatientReading) == 1
    assert count(engine, PatientReading, PatientReading.patient_mrn == 777) == 0


def test_a_crash_after_the_turnover_statements_rolls_everything_back(client, db, engine):
    _seed_ann(client)
    with pytest.raises(Crash):
        with db.session(write=True) as session:
            status, view = patients.upsert_patient(
                session, {"room_number": ROOM, "patient_mrn": 777, "CPAP_pressure": 5, "breath_rate": 20})
            assert (status, view["patient_mrn"], view["CPAP_pressure"]) == (200, 777, [5])  # applied, not committed
            raise Crash("the worker dies before the commit")
    _assert_ann_intact(client, engine)


def test_a_reading_the_database_refuses_rolls_the_turnover_back(client, db, engine):
    """The occupant row is already rewritten when the reading's insert breaks a CHECK constraint."""
    _seed_ann(client)
    unchecked = patients.PatientInput(room_number=ROOM, patient_mrn=777, patient_name="Bob",
                                      reading=patients.Reading(CPAP_pressure=-5, breath_rate=20.0,
                                                               apnea_count=None, flow_image=None))
    with pytest.raises(Conflict):
        with db.session(write=True) as session:
            patients.apply_patient(session, unchecked)
    _assert_ann_intact(client, engine)
