"""PUT /patients under concurrency, over real HTTP against a multi-worker `tiddly serve`.

Concurrent PUTs on one room serialize on the room's row (SQLite: its write lock),
so N clients x M appends leave exactly N x M readings, and clients racing to
create or turn over one room leave one occupant and lose no reading.
"""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import requests

CLIENTS, APPENDS_EACH = 8, 100
ROUNDS = 4  # turnover races, each on a fresh (empty) room


def readings(base: str, where: dict) -> list[dict]:
    response = requests.get(base + "/patient_readings",
                            params={"where": json.dumps(where), "limit": "1000", "orderby": "id"})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_concurrent_appends_to_one_room_keep_every_reading(db_url, live_server_factory):
    server = live_server_factory(db_url, workers=4)
    first = requests.put(server.url + "/patients", json={"room_number": 7, "patient_mrn": 700})
    assert first.status_code == 201, first.text

    def client(number: int) -> list[int]:
        statuses = []
        with requests.Session() as session:
            for i in range(APPENDS_EACH):
                body = {"room_number": 7, "patient_mrn": "700", "CPAP_pressure": number, "breath_rate": i,
                        "apnea_count": i % 3}
                statuses.append(session.put(server.url + "/patients?readings=0", json=body).status_code)
        return statuses

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = [s for result in pool.map(client, range(CLIENTS)) for s in result]

    assert statuses == [200] * (CLIENTS * APPENDS_EACH)
    stored = readings(server.url, {"room_number": 7, "patient_mrn": 700})
    assert len(stored) == CLIENTS * APPENDS_EACH
    for number in range(CLIENTS):  # each client's 100 readings, none lost or doubled
        mine = sorted(r["breath_rate"] for r in stored if r["CPAP_pressure"] == number)
        assert mine == [float(i) for i in range(APPENDS_EACH)]
    view = requests.put(server.url + "/patients?readings=1000", json={"room_number": 7, "patient_mrn": 700}).json()
    assert len(view["data"]["CPAP_pressure"]) == CLIENTS * APPENDS_EACH


def test_racing_turnovers_leave_one_occupant_and_every_reading(db_url, live_server_factory):
    server = live_server_factory(db_url, workers=4)
    for room in range(1, ROUNDS + 1):
        mrns = [room * 1000 + n for n in range(CLIENTS)]
        start = threading.Barrier(CLIENTS)

        def client(mrn: int, room=room, start=start) -> requests.Response:
            body = {"room_number": room, "patient_mrn": mrn, "patient_name": f"P{mrn}",
                    "CPAP_pressure": mrn % 20, "breath_rate": 12.5}
            with requests.Session() as session:
                start.wait()
                return session.put(server.url + "/patients", json=body)

        with ThreadPoolExecutor(CLIENTS) as pool:
            responses = list(pool.map(client, mrns))

        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * (CLIENTS - 1) + [201], [r.text for r in responses if r.status_code >= 300]
        for mrn, response in zip(mrns, responses):  # each saw itself as the occupant, with its own reading
            data = response.json()["data"]
            assert (data["patient_mrn"], data["CPAP_pressure"]) == (mrn, [mrn % 20])

        occupant = requests.get(f"{server.url}/patients/{room}").json()["data"]
        assert occupant["patient_mrn"] in mrns and occupant["patient_name"] == f"P{occupant['patient_mrn']}"
        stored = readings(server.url, {"room_number": room})
        assert sorted(r["patient_mrn"] for r in stored) == mrns  # one reading under each client's own MRN
        assert all(r["CPAP_pressure"] == r["patient_mrn"] % 20 for r in stored)
        final = requests.get(server.url + "/get_all_patients").json()
        assert [p["patient_mrn"] for p in final if p["room_number"] == room] == [occupant["patient_mrn"]]
