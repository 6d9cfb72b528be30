"""The original CPAP server's routes, answering as it did (DESIGN section 6), for its clients.

The original's clients (a Tk desktop GUI and a Streamlit page) call these
unchanged, so the bodies are what the original produced: Flask's ``jsonify``
of a string, number or list (sorted keys, compact, a trailing newline), or a
plain string served as text/html. This module is the compatibility edge: it
turns each request into a call to ``patients.py`` and that module's typed
errors into the original's messages. ``register`` adds the routes when the
shipped ``patients`` model is served.

Where Tiddly differs on purpose (docs/patients.md says why): the prescribed
pressure is stored in the database, is cleared by a room turnover, and cannot
be set for an empty room (404); a room with no prescription answers
``CPAP_query`` with a 404, where the original raised a KeyError (a 500); a
measured reading uploaded without a pressure is kept, where the original
dropped it (``get_all_patients`` leaves it out, as the original did).
"""
from __future__ import annotations

from typing import Iterator

from flask import Flask, Response, current_app, jsonify, request

from tiddly import jsonio
from tiddly.errors import ApiError, BadJson, BadValue, MissingColumn
from tiddly.models import Patient
from tiddly.monitor import patients
from tiddly.web import guard

ORIGINAL_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # the original's timestamps (here in UTC)
NOT_IN_DATABASE = "Patient not in database"


def register(app: Flask, gateway) -> None:
    spec = gateway.registry.tables.get("patients")
    if spec is None or spec.table is not Patient.__table__:
        return
    both = ("patients", "patient_readings")
    routes = (  # path, endpoint, method, the scope it needs on every table it uses, the view
        ("/add_patient", "cpap_add_patient", "POST", ("write", both), lambda: add_patient(gateway)),
        ("/new_cpap_pressure/<room>/<value>", "cpap_new_pressure", "GET", ("write", ("patients",)),
         lambda room, value: new_cpap_pressure(gateway, room, value)),
        ("/CPAP_query/<room>", "cpap_query", "GET", ("read", ("patients",)), lambda room: cpap_query(gateway, room)),
        ("/get_all_patients", "cpap_all_patients", "GET", ("read", both), lambda: get_all_patients(gateway)),
        ("/health", "cpap_health", "GET", None, lambda: health(gateway)),
    )
    for path, endpoint, method, access, view in routes:
        app.add_url_rule(path, endpoint, view, methods=[method])
        if access is not None:  # neither the path nor the verb (a GET that writes) tells the guard
            guard.ROUTE_ACCESS[endpoint] = access


def add_patient(gateway):
    try:
        body = jsonio.loads(request.get_data())
    except BadJson:
        body = None
    if not isinstance(body, dict):
        return jsonify("Input is not a dictionary"), 400
    try:
        data = patients.parse_patient(body, original_rules=True)
    except ApiError as exc:
        return jsonify(_original_message(exc)), 400
    with gateway.session(write=True) as session:
        status, _view = patients.apply_patient(session, data, readings=0)
    return jsonify("New patient created" if status == 201 else "Patient successfully updated"), 200


def _original_message(exc: ApiError) -> str:
    """The original's wording for a failed check; Tiddly's own for checks it did not make."""
    key = exc.details.get("key")
    if isinstance(exc, MissingColumn):
        return f"Key {key} is missing from input"
    field = patients.FIELDS_BY_KEY.get(key)
    if isinstance(exc, BadValue) and field is not None:
        if field.kind in ("integer", "number"):
            return f"Key {key} is not an int or numeric string"
        return f"Key {key} has the incorrect value type"
    return exc.message


def new_cpap_pressure(gateway, room: str, value: str):
    try:
        room_number = patients.parse_value("room_number", room)
        pressure = patients.parse_value("CPAP_pressure", value)
    except BadValue:
        return "Bad value for room number or new value", 400
    with gateway.session(write=True) as session:
        found = patients.prescribe_pressure(session, room_number, pressure)
    if not found:
        return NOT_IN_DATABASE, 404
    return f"Room number {room_number} CPAP pressure updated to {pressure}", 200


def cpap_query(gateway, room: str):
    try:
        room_number = patients.parse_value("room_number", room)
    except BadValue:
        return jsonify(NOT_IN_DATABASE), 400
    with gateway.session() as session:
        patient = patients.find_patient(session, room_number)
    if patient is None:
        return jsonify(NOT_IN_DATABASE), 400
    if patient.prescribed_cpap_pressure is None:
        return jsonify(f"No CPAP pressure has been prescribed for room {room_number}"), 404
    return jsonify(patient.prescribed_cpap_pressure), 200


def get_all_patients(gateway):
    """Every room's whole stay (the latest ``?readings=N`` for clients that ask), streamed.

    The bytes are ``jsonify``'s of the original's list, written a room at a time and the
    flow images a batch at a time, so memory stays flat however long the stays. The rooms
    are read before the first byte, so a database that is down is still a 503; a failure
    after it cuts the answer short.
    """
    try:
        limit = patients.view_limit(request.args.get("readings"), default=None)
    except BadValue as exc:
        return jsonify(exc.message), 400
    with gateway.session() as session:
        rooms = patients.all_patients(session)
    chunks = _original_views(gateway, rooms, limit, current_app.json.dumps)
    return Response(chunks, 200, mimetype="application/json")


def _original_views(gateway, rooms: list[Patient], limit: int | None, dumps) -> Iterator[bytes]:
    yield b"["
    with gateway.session() as session:
        for n, patient in enumerate(rooms):
            if n:
                yield b","
            yield from _original_view(session, patient, limit, dumps)
    yield b"]\n"


def _original_view(session, patient: Patient, limit: int | None, dumps) -> Iterator[bytes]:
    """One room as the original listed it, ``jsonify``'s bytes: sorted keys, no spaces."""
    def text(value) -> str:
        return dumps(value, separators=(",", ":"))

    readings = patients.original_readings(session, patient, limit)
    view = {
        "room_number": patient.room_number,
        "patient_mrn": patient.patient_mrn,
        "patient_name": patient.patient_name or "Not provided",
        "CPAP_pressure": [r.CPAP_pressure for r in readings],
        "breath_rate": [r.breath_rate for r in readings],
        "apnea_count": [r.apnea_count for r in readings],
        "timestamp": [r.timestamp.strftime(ORIGINAL_TIME_FORMAT) for r in readings],
    }
    # jsonify sorts the keys, so flow_image falls between these two halves: it is written in batches.
    before = text({k: v for k, v in view.items() if k < "flow_image"})
    after = text({k: v for k, v in view.items() if k > "flow_image"})
    yield f'{before[:-1]},"flow_image":['.encode()
    separator = ""
    for images in patients.flow_images(session, [r.id for r in readings]):
        yield (separator + ",".join(text(image or "") for image in images)).encode()
        separator = ","
    yield f"],{after[1:]}".encode()


def health(gateway):
    gateway.db.ping()
    return jsonify({"status": "healthy", "service": "sleep-lab-api"}), 200
