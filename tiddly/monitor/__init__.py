"""The patient monitor: the one special case over the generic table service.

``patients`` is its service (the ``PUT /patients`` upsert: create, update, append a
CPAP reading, room turnover; the patient view). ``cpap`` serves the original CPAP
server's routes (``/add_patient``, ``/CPAP_query/<room>``, ...) for its real clients.
Its tables, ``patients`` and ``patient_readings``, are shipped models (``tiddly.models``).
"""
