"""The original CPAP server's routes, replayed with its clients' exact payloads (DESIGN section 6).

The desktop client (Tk) sends MRN and room as ints and every other value as the
text of an entry box or label: CPAP_pressure "12", breath_rate str(float),
apnea_count str(int), flow_image a base64 JPEG. The Streamlit client sends
breath_rate as a float and apnea_count as an int. Both read the bodies byte by
byte: the desktop client drops the last character of the polled pressure, so it
must be the bare number and one newline. Both list the patients by counting
``CPAP_pressure``, indexing the other arrays alongside it, formatting each breath
rate with ``{:.2f}`` and comparing each apnea count with ``>= 2``
(``client_patient_list`` does the same here).
"""
from __future__ import annotations

import base64
import json
import re
import struct

import pytest
import requests

from tiddly import create_app
from tiddly.monitor import patients

ROOM, MRN = 101, 12345


def tiny_jpeg(padding: int = 0) -> bytes:
    """A baseline JPEG (one 8x8 grey block), built here so the tests need no image library;
    ``padding`` bytes of comment make it as large as a real flow plot."""
    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    comments = b"".join(segment(0xFE, b"x" * min(65000, padding - done)) for done in range(0, padding, 65000))
    return (b"\xff\xd8" + comments
            + segment(0xDB, b"\x00" + bytes([1] * 64))                            # quantization table
            + segment(0xC0, struct.pack(">BHHB", 8, 8, 8, 1) + b"\x01\x11\x00")    # 8x8, one component
            + segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")            # DC table: one code
            + segment(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00")            # AC table: EOB only
            + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\x3f"               # DC 0, EOB
            + b"\xff\xd9")


FLOW_IMAGE = base64.b64encode(tiny_jpeg()).decode("ascii")
BIG_FLOW_IMAGE = base64.b64encode(tiny_jpeg(padding=150_000)).decode("ascii")  # > MariaDB's TEXT


def desktop_payload(pressure="12", breath_rate="Not measured", apnea="Not measured", image=FLOW_IMAGE,
                    name="Ann Lee", mrn=MRN, room=ROOM) -> dict:
    """patient_GUI.py's create_json(int(mrn), int(room_number), name, pressure entry text,
    breath-rate label text, apnea label text, plot_to_b64(fig))."""
    return {"patient_name": name, "patient_mrn": int(mrn), "room_number": int(room), "CPAP_pressure": pressure,
            "breath_rate": breath_rate, "apnea_count": apnea, "flow_image": image}


def json_string(text: str) -> bytes:
    """What the original's ``jsonify(text)`` answered."""
    return json.dumps(text).encode() + b"\n"


def assert_json_string(response, status: int, text: str) -> None:
    assert (response.status_code, response.data) == (status, json_string(text))
    assert response.mimetype == "application/json"


def assert_plain(response, status: int, text: str) -> None:
    assert (response.status_code, response.data) == (status, text.encode())
    assert response.mimetype == "text/html"  # a str returned from a Flask view, as in the original


def jsonify_bytes(value) -> bytes:
    """What the original's ``jsonify(value)`` answered: sorted keys, no spaces, ASCII, a newline."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def all_patients(client) -> list[dict]:
    """GET /get_all_patients as both clients read it; the bytes are jsonify's of what they parse."""
    response = client.get("/get_all_patients")
    assert (response.status_code, response.mimetype) == (200, "application/json")
    patients = json.loads(response.data)
    assert response.data == jsonify_bytes(patients)
    return patients


def client_patient_list(patients: list[dict]) -> list[str]:
    """The lines both clients' "View All Patients" build from the list (raising where they would):
    one record per CPAP_pressure item, the other arrays read at the same index."""
    lines = []
    for patient in patients:
        records = len(patient["CPAP_pressure"])
        lines.append(f"Room {patient['room_number']} - {patient['patient_name']} (MRN: {patient['patient_mrn']}): "
                     f"CPAP Data Records: {records}")
        for i in range(records):
            alert = "!" if patient["apnea_count"][i] >= 2 else ""
            lines.append(f"{patient['timestamp'][i]} | {patient['CPAP_pressure'][i]} | "
                         f"{patient['breath_rate'][i]:.2f} | {patient['apnea_count'][i]}{alert}")
    return lines


def readings(client, mrn: int) -> list[dict]:
    """Every stored reading of ``mrn``, oldest first, through the generic endpoint."""
    query = {"where": json.dumps({"patient_mrn": mrn}), "orderby": "id"}
    response = client.get("/patient_readings", query_string=query)
    assert response.status_code == 200
    return response.get_json()["data"]


def put_view(client, room: int, mrn: int) -> dict:
    """The PUT /patients view of the room (a PUT with no reading changes nothing)."""
    response = client.put("/patients", json={"room_number": room, "patient_mrn": mrn})
    assert response.status_code == 200
    return response.get_json()["data"]


def desktop_poll(client, room: int) -> str:
    """query_server(): the entry box gets the body minus its last character."""
    polled = client.get(f"/CPAP_query/{room}")
    assert polled.status_code == 200
    return polled.get_data(as_text=True)[:-1]


# -- the desktop client ------------------------------------------------------------------

def test_desktop_client_session(client):
    # Upload before any data file: the labels still read "Not measured" (the original said the same)
    assert_json_string(client.post("/add_patient", json=desktop_payload()), 400,
                       "Key breath_rate is not an int or numeric string")

    # A data file analysed: breath rate str(float), apnea count str(int)
    first = desktop_payload(breath_rate=str(14.035087719298245), apnea="2")
    assert_json_string(client.post("/add_patient", json=first), 200, "New patient created")

    # The monitoring side prescribes a pressure; the client polls it every 30 s
    assert_plain(client.get(f"/new_cpap_pressure/{ROOM}/18"), 200, f"Room number {ROOM} CPAP pressure updated to 18")
    polled = client.get(f"/CPAP_query/{ROOM}")
    assert (polled.status_code, polled.data, polled.mimetype) == (200, b"18\n", "application/json")
    entry_box = polled.get_data(as_text=True)[:-1]  # query_server(): a = a[:-1]
    assert entry_box == "18"

    # The next upload carries the polled pressure from the entry box
    second = desktop_payload(pressure=entry_box, breath_rate=str(15.5), apnea="0", image=BIG_FLOW_IMAGE)
    assert_json_string(client.post("/add_patient", json=second), 200, "Patient successfully updated")

    everyone = client.get("/get_all_patients")
    assert everyone.status_code == 200 and everyone.mimetype == "application/json"
    (ann,) = everyone.get_json()
    stamps = ann["timestamp"]
    assert len(stamps) == 2 and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", t) for t in stamps)
    expected = [{"CPAP_pressure": [12, 18], "apnea_count": [2, 0], "breath_rate": [14.035087719298245, 15.5],
                 "flow_image": [FLOW_IMAGE, BIG_FLOW_IMAGE], "patient_mrn": MRN, "patient_name": "Ann Lee",
                 "room_number": ROOM, "timestamp": stamps}]
    # jsonify's bytes: sorted keys, no spaces, a trailing newline
    assert everyone.data == json.dumps(expected, sort_keys=True, separators=(",", ":")).encode() + b"\n"

    # display_all_patients() formats every record like this: it must not raise
    for i in range(len(ann["CPAP_pressure"])):
        "{} | {} | {:.2f} | {}".format(ann["timestamp"][i], ann["CPAP_pressure"][i], ann["breath_rate"][i],
                                       ann["apnea_count"][i])
        assert isinstance(ann["apnea_count"][i] >= 2, bool)


def test_desktop_upload_with_the_pressure_box_empty(client):
    """A data file analysed, the pressure box left empty: the original's 200 and its effect
    (the patient stored, the prescription that follows succeeds), and the reading kept."""
    measured = desktop_payload(pressure="", breath_rate=str(14.046242774566473), apnea="2")
    assert_json_string(client.post("/add_patient", json=measured), 200, "New patient created")
    # ok_btn_cmd(): a data file was analysed, so it prescribes a pressure, then polls it
    assert_plain(client.get(f"/new_cpap_pressure/{ROOM}/18"), 200, f"Room number {ROOM} CPAP pressure updated to 18")
    assert desktop_poll(client, ROOM) == "18"

    # the same room again, the box still empty (an update), then with the polled pressure
    again = desktop_payload(pressure="", breath_rate=str(13.5), apnea="0", image=BIG_FLOW_IMAGE)
    assert_json_string(client.post("/add_patient", json=again), 200, "Patient successfully updated")
    full = desktop_payload(pressure="18", breath_rate=str(15.25), apnea="3")
    assert_json_string(client.post("/add_patient", json=full), 200, "Patient successfully updated")

    # the original's list shows what it could: the reading with a pressure
    (ann,) = all_patients(client)
    assert (ann["CPAP_pressure"], ann["breath_rate"], ann["apnea_count"], ann["flow_image"]) == \
        ([18], [15.25], [3], [FLOW_IMAGE])
    assert client_patient_list([ann])[0].endswith("CPAP Data Records: 1")
    # and nothing measured is lost
    stored = [(r["CPAP_pressure"], r["breath_rate"], r["apnea_count"], r["flow_image"]) for r in readings(client, MRN)]
    assert stored == [(None, 14.046242774566473, 2, FLOW_IMAGE), (None, 13.5, 0, BIG_FLOW_IMAGE),
                      (18, 15.25, 3, FLOW_IMAGE)]
    view = put_view(client, ROOM, MRN)
    assert (view["CPAP_pressure"], view["apnea_count"]) == ([None, None, 18], [2, 0, 3])


def test_desktop_upload_with_the_pressure_box_empty_on_a_turnover(client):
    client.post("/add_patient", json=desktop_payload(breath_rate="14.0", apnea="1"))
    newcomer = desktop_payload(mrn=777, name="Cy", pressure="", breath_rate="16.0", apnea="0")
    assert_json_string(client.post("/add_patient", json=newcomer), 200, "Patient successfully updated")
    assert_plain(client.get(f"/new_cpap_pressure/{ROOM}/9"), 200, f"Room number {ROOM} CPAP pressure updated to 9")
    assert desktop_poll(client, ROOM) == "9"
    (cy,) = all_patients(client)
    assert (cy["patient_mrn"], cy["patient_name"], cy["CPAP_pressure"], cy["timestamp"]) == (777, "Cy", [], [])
    assert [r["breath_rate"] for r in readings(client, 777)] == [16.0]


def test_a_pressure_without_a_breath_rate_is_still_refused(client):
    """Neither client sends it (the breath rate reads "Not measured" until a file is analysed);
    the original dropped the reading without a word, Tiddly refuses it."""
    body = desktop_payload(pressure="12", breath_rate="", apnea="")
    response = client.post("/add_patient", json=body)
    assert response.status_code == 400 and "CPAP_pressure" in response.get_json()
    assert all_patients(client) == []


# -- the whole stay, in arrays the clients can read ----------------------------------------

def test_the_whole_stay_is_listed(client):
    for n in range(25):
        body = desktop_payload(pressure=str(4 + n % 20), breath_rate=str(12 + n / 8), apnea=str(n % 4))
        assert client.post("/add_patient", json=body).status_code == 200
    (ann,) = all_patients(client)
    assert ann["CPAP_pressure"] == [4 + n % 20 for n in range(25)]
    assert ann["breath_rate"] == [12 + n / 8 for n in range(25)]
    assert len(ann["apnea_count"]) == len(ann["flow_image"]) == len(ann["timestamp"]) == 25
    assert client_patient_list([ann])[0].endswith("CPAP Data Records: 25")

    # new clients may ask for the latest N
    latest = client.get("/get_all_patients?readings=3").get_json()[0]
    assert latest["CPAP_pressure"] == [4 + n % 20 for n in range(22, 25)]
    assert latest["timestamp"] == ann["timestamp"][22:]
    assert client.get("/get_all_patients?readings=0").get_json()[0]["CPAP_pressure"] == []
    bad = client.get("/get_all_patients?readings=many")
    assert bad.status_code == 400 and "readings" in bad.get_json()


def test_the_streamed_list_is_jsonify_byte_for_byte(client, monkeypatch):
    """Rooms, names and images in batches: the bytes are those of jsonify of the same list."""
    monkeypatch.setattr(patients, "IMAGE_BATCH", 3)
    images = [base64.b64encode(tiny_jpeg(padding=n)).decode("ascii") for n in range(8)]
    for n, image in enumerate(images):
        body = desktop_payload(name="Zoë Ñúñez \u2603", pressure=str(5 + n), breath_rate=str(n / 3), apnea=str(n),
                               image=image, room=103)
        client.post("/add_patient", json=body)
    client.post("/add_patient", json=desktop_payload(name="", mrn=9, room=102, pressure="", breath_rate="",
                                                     apnea="", image=""))
    client.post("/add_patient", json=desktop_payload(mrn=8, room=101, breath_rate="1.5", apnea="0", image=""))
    everyone = all_patients(client)  # checks the bytes
    assert [p["room_number"] for p in everyone] == [101, 102, 103]
    assert everyone[0]["flow_image"] == [""] and everyone[1]["patient_name"] == "Not provided"
    assert everyone[2]["patient_name"] == "Zoë Ñúñez \u2603" and everyone[2]["flow_image"] == images
    assert everyone[2]["breath_rate"] == [n / 3 for n in range(8)]
    assert client.get("/get_all_patients?readings=4").get_json()[2]["flow_image"] == images[4:]


def test_readings_the_original_could_not_show_are_left_out_of_its_arrays(client):
    """PUT /patients takes a reading without an apnea count; the original's arrays never held one."""
    put = {"room_number": ROOM, "patient_mrn": MRN}
    for reading in ({"CPAP_pressure": 10, "breath_rate": 12.0, "apnea_count": 1, "flow_image": FLOW_IMAGE},
                    {"CPAP_pressure": 11, "breath_rate": 13.0},
                    {"CPAP_pressure": 12, "breath_rate": 14.0, "apnea_count": 3}):
        assert client.put("/patients", json={**put, **reading}).status_code in (200, 201)
    (ann,) = all_patients(client)
    assert (ann["CPAP_pressure"], ann["breath_rate"], ann["apnea_count"], ann["flow_image"]) == \
        ([10, 12], [12.0, 14.0], [1, 3], [FLOW_IMAGE, ""])
    assert len(ann["timestamp"]) == 2
    assert client_patient_list([ann])[2].endswith("| 3!")  # both clients' alert for >= 2 apneas
    # the left-out reading is stored, and in the PUT /patients view
    assert [r["apnea_count"] for r in readings(client, MRN)] == [1, None, 3]
    assert put_view(client, ROOM, MRN)["apnea_count"] == [1, None, 3]


def test_add_patient_with_an_empty_apnea_count_beside_a_reading_is_a_400(client):
    """The original crashed (a 500) and stored nothing."""
    empty_apnea = desktop_payload(breath_rate="14.0", apnea="")
    assert_json_string(client.post("/add_patient", json=empty_apnea), 400,
                       "Key apnea_count is not an int or numeric string")
    assert all_patients(client) == []
    client.post("/add_patient", json=desktop_payload(name="Ann", breath_rate="14.0", apnea="1"))
    empty_apnea.update(patient_name="Ann Lee")
    assert_json_string(client.post("/add_patient", json=empty_apnea), 400,
                       "Key apnea_count is not an int or numeric string")
    (ann,) = all_patients(client)
    assert (ann["patient_name"], ann["apnea_count"]) == ("Ann", [1])
    assert len(readings(client, MRN)) == 1
    # without a pressure there was no reading for the original to fail on: a 200, the rate kept
    no_pressure = desktop_payload(pressure="", breath_rate="15.0", apnea="")
    assert_json_string(client.post("/add_patient", json=no_pressure), 200, "Patient successfully updated")
    assert [(r["breath_rate"], r["apnea_count"]) for r in readings(client, MRN)] == [(14.0, 1), (15.0, None)]
    assert all_patients(client)[0]["apnea_count"] == [1]


def test_the_clients_flows_over_real_http(db_url, live_server_factory):
    """The three flows through `tiddly serve` and the clients' own HTTP library: the list of a
    long stay with plot-sized images arrives streamed and parses as the clients parse it."""
    base = live_server_factory(db_url).url
    plot = base64.b64encode(tiny_jpeg(padding=30_000)).decode("ascii")
    with requests.Session() as http:
        empty_box = desktop_payload(pressure="", breath_rate=str(14.046242774566473), apnea="2", image=plot)
        created = http.post(base + "/add_patient", json=empty_box)
        assert (created.status_code, created.text) == (200, '"New patient created"\n')
        assert http.get(f"{base}/new_cpap_pressure/{ROOM}/18").text == f"Room number {ROOM} CPAP pressure updated to 18"
        polled = http.get(f"{base}/CPAP_query/{ROOM}")
        assert (polled.status_code, polled.text[:-1]) == (200, "18")
        for n in range(25):
            body = desktop_payload(pressure=polled.text[:-1], breath_rate=str(12 + n / 4), apnea=str(n % 3), image=plot)
            assert http.post(base + "/add_patient", json=body).text == '"Patient successfully updated"\n'
        assert http.put(base + "/patients", json={"room_number": ROOM, "patient_mrn": MRN, "CPAP_pressure": 7,
                                                  "breath_rate": 11}).status_code == 200  # no apnea count

        listed = http.get(base + "/get_all_patients")
        assert listed.status_code == 200 and listed.headers["Content-Type"] == "application/json"
        assert listed.headers.get("Transfer-Encoding") == "chunked"
        (ann,) = listed.json()
        assert listed.content == jsonify_bytes([ann])
        assert ann["CPAP_pressure"] == [18] * 25 and ann["flow_image"] == [plot] * 25
        assert client_patient_list([ann])[0].endswith("CPAP Data Records: 25")
        query = {"where": json.dumps({"patient_mrn": MRN}), "select": "CPAP_pressure", "orderby": "id", "limit": "100"}
        stored = http.get(base + "/patient_readings", params=query).json()
        assert [r["CPAP_pressure"] for r in stored["data"]] == [None] + [18] * 25 + [7]


def test_desktop_client_turnover_keeps_the_room_and_starts_fresh(client):
    client.post("/add_patient", json=desktop_payload(breath_rate="14.0", apnea="1"))
    client.get(f"/new_cpap_pressure/{ROOM}/18")
    new = desktop_payload(mrn=777, name="", pressure="", breath_rate="Not measured", apnea="Not measured")
    assert_json_string(client.post("/add_patient", json=new), 400, "Key breath_rate is not an int or numeric string")
    new.update(CPAP_pressure="5", breath_rate="20.0", apnea_count="3")
    assert_json_string(client.post("/add_patient", json=new), 200, "Patient successfully updated")
    (patient,) = client.get("/get_all_patients").get_json()
    assert (patient["patient_mrn"], patient["patient_name"], patient["CPAP_pressure"]) == (777, "Not provided", [5])
    # the prescription was for the previous patient
    assert client.get(f"/CPAP_query/{ROOM}").status_code == 404


# -- the Streamlit client -----------------------------------------------------------------

def streamlit_payload(pressure="", breath_rate=16.25, apnea=3, mrn="555", room="102") -> dict:
    """sleep_lab_app.py's create_json(int(mrn), int(room_number), name, pressure text,
    cpap_data['breath_rate'] (a float), cpap_data['apnea_count'] (an int), image)."""
    return {"patient_name": "Bo", "patient_mrn": int(mrn), "room_number": int(room), "CPAP_pressure": pressure,
            "breath_rate": breath_rate, "apnea_count": apnea, "flow_image": FLOW_IMAGE}


def test_streamlit_client_session(client):
    # No data file: it sends "Not measured" for both (the original answered the same 400)
    none = streamlit_payload(pressure="9", breath_rate="Not measured", apnea="Not measured")
    assert_json_string(client.post("/add_patient", json=none), 400, "Key breath_rate is not an int or numeric string")

    # A data file but no pressure typed: the original created the patient (and dropped the reading)
    assert_json_string(client.post("/add_patient", json=streamlit_payload(pressure="")), 200, "New patient created")
    # after a 200 with data, the page prescribes a pressure and polls it
    assert client.get("/new_cpap_pressure/102/21").status_code == 200
    polled = client.get("/CPAP_query/102")
    assert polled.status_code == 200 and polled.get_data(as_text=True).strip() == "21"
    assert_json_string(client.post("/add_patient", json=streamlit_payload(pressure="21", breath_rate=15.0, apnea=0)),
                       200, "Patient successfully updated")
    assert_json_string(client.post("/add_patient", json=streamlit_payload(pressure="9", breath_rate=14.5, apnea=2)),
                       200, "Patient successfully updated")
    (bo,) = all_patients(client)
    assert (bo["CPAP_pressure"], bo["breath_rate"], bo["apnea_count"]) == ([21, 9], [15.0, 14.5], [0, 2])
    assert client_patient_list([bo])[0].endswith("CPAP Data Records: 2")
    # nothing lost: the measured values of the upload without a pressure are stored
    stored = readings(client, 555)
    assert [(r["CPAP_pressure"], r["breath_rate"], r["apnea_count"]) for r in stored] == \
        [(None, 16.25, 3), (21, 15.0, 0), (9, 14.5, 2)]


# -- /add_patient: the original's checks, order and messages ------------------------------

KEYS = ["patient_mrn", "room_number", "patient_name", "CPAP_pressure", "breath_rate", "apnea_count", "flow_image"]
FULL = desktop_payload(breath_rate="14.0", apnea="1")


def without(*keys, **changes) -> dict:
    return {k: v for k, v in {**FULL, **changes}.items() if k not in keys}


ADD_PATIENT_400 = [
    ([], "Input is not a dictionary"),
    ("a string", "Input is not a dictionary"),
    (None, "Input is not a dictionary"),
    ({}, "Key patient_mrn is missing from input"),
    (without("room_number"), "Key room_number is missing from input"),
    (without("flow_image"), "Key flow_image is missing from input"),
    (without("apnea_count", "flow_image"), "Key apnea_count is missing from input"),
    # keys in order, each checked for presence then type: the first failure wins
    (without("room_number", patient_mrn="abc"), "Key patient_mrn is not an int or numeric string"),
    (without("breath_rate", patient_name=5), "Key patient_name has the incorrect value type"),
    (without(patient_mrn="½"), "Key patient_mrn is not an int or numeric string"),
    (without(room_number=True), "Key room_number is not an int or numeric string"),
    (without(room_number=""), "Key room_number is not an int or numeric string"),
    (without(CPAP_pressure="-1"), "Key CPAP_pressure is not an int or numeric string"),
    (without(CPAP_pressure="12.5"), "Key CPAP_pressure is not an int or numeric string"),
    (without(breath_rate="nan"), "Key breath_rate is not an int or numeric string"),
    (without(breath_rate=True), "Key breath_rate is not an int or numeric string"),
    (without(breath_rate=None), "Key breath_rate is not an int or numeric string"),
    (without(breath_rate=[14.0]), "Key breath_rate is not an int or numeric string"),
    (without(apnea_count="Not measured"), "Key apnea_count is not an int or numeric string"),
    (without(flow_image=None), "Key flow_image has the incorrect value type"),
    (without(flow_image=12), "Key flow_image has the incorrect value type"),
]


def test_add_patient_checks_in_the_original_order_with_its_messages(client):
    problems = []
    for body, message in ADD_PATIENT_400:
        response = client.post("/add_patient", data=json.dumps(body), content_type="application/json")
        if (response.status_code, response.data) != (400, json_string(message)):
            problems.append(f"{body!r}: {response.status_code} {response.data!r}, expected {message!r}")
    assert not problems, "\n".join(problems)
    not_json = client.post("/add_patient", data=b"{not json", content_type="application/json")
    assert_json_string(not_json, 400, "Input is not a dictionary")
    assert client.get("/get_all_patients").data == b"[]\n"


def test_add_patient_accepts_empty_strings_as_not_provided(client):
    body = {key: "" for key in KEYS} | {"patient_mrn": MRN, "room_number": ROOM}
    assert_json_string(client.post("/add_patient", json=body), 200, "New patient created")
    (patient,) = client.get("/get_all_patients").get_json()
    assert patient == {"room_number": ROOM, "patient_mrn": MRN, "patient_name": "Not provided", "CPAP_pressure": [],
                       "breath_rate": [], "apnea_count": [], "flow_image": [], "timestamp": []}
    # 12345 and "12345" are the same patient: an update, not a turnover that wipes the history
    body.update(patient_mrn=str(MRN), CPAP_pressure="7", breath_rate="10", apnea_count="0")
    assert_json_string(client.post("/add_patient", json=body), 200, "Patient successfully updated")
    assert_json_string(client.post("/add_patient", json=body), 200, "Patient successfully updated")
    assert client.get("/get_all_patients").get_json()[0]["CPAP_pressure"] == [7, 7]


# -- the prescribed pressure ---------------------------------------------------------------

@pytest.mark.parametrize("room, value", [("abc", "18"), ("101", "x"), ("101", "1.5"), ("101", "-3"), ("-101", "5"),
                                         ("½", "5"), ("101", "½"), ("0", "5"), ("101", "99999999999")])
def test_new_cpap_pressure_bad_values(client, room, value):
    client.post("/add_patient", json=FULL)
    assert_plain(client.get(f"/new_cpap_pressure/{room}/{value}"), 400, "Bad value for room number or new value")


def test_new_cpap_pressure_for_an_empty_room_is_a_404(client):
    assert_plain(client.get("/new_cpap_pressure/404/18"), 404, "Patient not in database")
    assert client.get("/CPAP_query/404").status_code == 400


def test_cpap_query_answers(client):
    assert_json_string(client.get(f"/CPAP_query/{ROOM}"), 400, "Patient not in database")
    assert_json_string(client.get("/CPAP_query/abc"), 400, "Patient not in database")
    client.post("/add_patient", json=FULL)
    assert_json_string(client.get(f"/CPAP_query/{ROOM}"), 404, f"No CPAP pressure has been prescribed for room {ROOM}")
    assert_plain(client.get(f"/new_cpap_pressure/{ROOM}/007"), 200, f"Room number {ROOM} CPAP pressure updated to 7")
    assert client.get(f"/CPAP_query/{ROOM}").data == b"7\n"


def test_the_prescription_is_the_same_on_every_worker(client, config):
    """The original kept it in one process's memory; here it is in the database."""
    client.post("/add_patient", json=FULL)
    assert client.get(f"/new_cpap_pressure/{ROOM}/18").status_code == 200
    other_worker = create_app(config)
    try:
        assert other_worker.test_client().get(f"/CPAP_query/{ROOM}").data == b"18\n"
    finally:
        other_worker.extensions["tiddly"].db.dispose()


def test_health(client):
    response = client.get("/health")
    assert (response.status_code, response.data) == (200, b'{"service":"sleep-lab-api","status":"healthy"}\n')
