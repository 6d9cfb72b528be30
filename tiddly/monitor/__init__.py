"""The patient monitor: the one special case over the generic table service, an extension of
the app like any other.

``patients`` is its service (the ``PUT /patients`` upsert: create, update, append a CPAP
reading, room turnover; the patient view); ``operations`` its typed operations and their
runners; ``cpap`` serves the original CPAP server's routes (``/add_patient``,
``/CPAP_query/<room>``, ...) for its real clients. Its tables, ``patients`` and
``patient_readings``, are shipped models (``tiddly.models``). ``register`` adds all of it to
an app that serves those tables: its operations to the executor, ``PUT /patients`` to the
dynamic endpoint (``Gateway.table_handlers``), its routes to the app.
"""
from __future__ import annotations

from flask import Flask, request

from tiddly.errors import BadQuery
from tiddly.models import Patient
from tiddly.monitor import cpap, operations, patients
from tiddly.web import api, conditional


def register(app: Flask, gateway) -> None:
    spec = gateway.registry.tables.get(operations.PATIENTS)
    if spec is None or spec.table is not Patient.__table__:
        return
    for operation_type, runner in operations.RUNNERS.items():
        gateway.executor.register(operation_type, runner)
    gateway.table_handlers[(spec.name, "PUT")] = put_patients
    cpap.register(app, gateway)


def put_patients(gateway, _view, spec):
    """PUT /patients: the patient upsert, not the generic one."""
    conditional.refuse_conditions("PUT /patients is the patient upsert")
    unknown = [k for k in request.args if k != "readings"]
    if unknown:
        raise BadQuery(f"unknown query parameter {unknown[0]!r} on PUT /patients; known: readings", key=unknown[0])
    readings = patients.view_limit(request.args.get("readings"))
    idempotent = api.idempotent_request(gateway)
    operation = operations.SavePatient(patients.parse_patient(api.read_body()), readings)
    return api.written(gateway, spec, operation, lambda written: (
        {"id": written.rows[0]["room_number"], "data": written.rows[0]}, 201 if written.created else 200),
        idempotent)
