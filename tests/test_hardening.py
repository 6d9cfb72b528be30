"""Hardening (issue 15): what an adversary and a chaos test found, each held here on every
database it applies to."""
from __future__ import annotations

import pytest
from envelope import assert_error, ok

# -- 1. input that reached the database and came back a 500 ---------------------------------

OUT_OF_UTC = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]


@pytest.mark.parametrize("value", OUT_OF_UTC)
@pytest.mark.parametrize("table, column", [("patient_readings", "timestamp"), ("patients", "admitted_at")])
def test_a_date_time_with_no_utc_time_is_a_400_naming_the_column(client, table, column, value):
    for where in ({column: {"gte": value}}, {column: value}, {column: {"in": ["2020-01-01T00:00:00", value]}}):
        body = assert_error(client.open(f"/{table}", method="FETCH", json={"where": where}), 400, "bad_value")
        assert body["details"] == {"column": column}
        assert value in body["error"]
    ok(client.open(f"/{table}", method="FETCH", json={"where": {column: {"gte": "0001-01-01T00:00:00-01:00"}}}))


@pytest.mark.parametrize("offset", [2**63, 2**64, 10**30])
def test_an_offset_past_64_bits_is_the_same_400_on_every_database(client, offset):
    message = "'offset' is at most 9223372036854775807, got "
    body = assert_error(client.open("/books", method="FETCH", json={"offset": offset}), 400, "bad_query")
    assert body["error"].startswith(message)  # past 64 bits the JSON parser reads a float: 1.8e+19
    url = assert_error(client.get(f"/books?offset={offset}"), 400, "bad_query")
    assert url["error"] == message + str(offset)
    assert ok(client.open("/books", method="FETCH", json={"offset": 2**63 - 1, "count": True})) == \
        {"status": "success", "data": [], "count": 0}
