"""Realtime's filters and Phoenix frames, without a server: what each filter becomes in Tiddly's
where language (typed by the column), what is refused, and realtime-js's binary broadcast frame."""
from __future__ import annotations

import pytest

from tiddly.config import Config
from tiddly.errors import ApiError, Unsupported
from tiddly.models import Base
from tiddly.registry import Registry
from tiddly.web.realtime import bindings, phoenix

REGISTRY = Registry.from_metadata(Base.metadata)
BOOKS, USERS = REGISTRY.get("books"), REGISTRY.get("user")
SETTINGS = Config(max_in_length=3)


@pytest.mark.parametrize("text, where", [
    ("year=eq.1965", {"year": {"eq": 1965}}),
    ("year=neq.1965", {"year": {"ne": 1965}}),
    ("year=lt.1900", {"year": {"lt": 1900}}),
    ("year=lte.1900", {"year": {"lte": 1900}}),
    ("year=gt.1900", {"year": {"gt": 1900}}),
    ("year=gte.1900", {"year": {"gte": 1900}}),
    ("id=in.(1,2,3)", {"id": {"in": [1, 2, 3]}}),
    ('title=in.("Tales, Old and New",Dune)', {"title": {"in": ["Tales, Old and New", "Dune"]}}),
    ("author=eq.Jane Austen", {"author": {"eq": "Jane Austen"}}),
    ('author=eq."a,b"', {"author": {"eq": "a,b"}}),
    ("title=eq.1965", {"title": {"eq": "1965"}}),
    ("author=like.Jane*", {"author": {"like": "Jane%"}}),
    ("author=ilike.%austen", {"author": {"ilike": "%austen"}}),
    ("year=is.null", {"year": {"is": None}}),
    ("year=is.not_null", {"year": {"ne": None}}),
    ("year=isdistinct.1965", {"or": [{"year": {"ne": 1965}}, {"year": {"eq": None}}]}),
    ("year=not.in.(1,2)", {"not": {"year": {"in": [1, 2]}}}),
    ("year=gt.1900,year=lt.2000", {"and": [{"year": {"gt": 1900}}, {"year": {"lt": 2000}}]}),
])
def test_a_filter_becomes_a_where(text, where):
    assert bindings.filter_where(BOOKS, text, SETTINGS) == where


@pytest.mark.parametrize("table, text, said", [
    (BOOKS, "nope=eq.1", "no column 'nope'"),
    (USERS, "password=eq.x", "no column 'password'"),
    (BOOKS, "year=eq.nineteen", "year"),
    (BOOKS, "year=eq.1.5", "year"),
    (BOOKS, "year", "column=operator.value"),
    (BOOKS, "=eq.1", "column=operator.value"),
    (BOOKS, "year=in.(1,2", "cannot read the filter"),
    (BOOKS, "id=in.(1,2,3,4)", "at most 3"),
    (BOOKS, "year=like.19*", "text column"),
    (BOOKS, "year=is.true", "boolean"),
    (BOOKS, "title=match.^D", "operator is one of"),
    (BOOKS, "title=fts.dune", "operator is one of"),
    (BOOKS, "title=eq(any).{a,b}", "operator is one of"),
])
def test_a_bad_filter_is_an_error_that_says_why(table, text, said):
    with pytest.raises(ApiError) as error:
        bindings.filter_where(table, text, SETTINGS)
    assert said in error.value.message, error.value.message


def test_match_is_refused_as_unsupported():
    with pytest.raises(Unsupported):
        bindings.filter_where(BOOKS, "title=imatch.x", SETTINGS)


def test_both_serializers_read_and_write_the_same_message():
    message = phoenix.Message("realtime:x", "phx_join", {"config": {}}, "2", "1")
    for vsn in phoenix.VERSIONS:
        again = phoenix.decode(phoenix.encode(message, vsn), vsn)
        assert again == (message if vsn == "2.0.0" else phoenix.Message("realtime:x", "phx_join", {"config": {}}, "2"))
    assert phoenix.decode('[1, 2, "phoenix", "heartbeat", null]', "2.0.0") == \
        phoenix.Message("phoenix", "heartbeat", {}, "2", "1")


def test_a_binary_broadcast_frame_gives_its_topic_and_refs():
    join_ref, ref, topic, event = b"3", b"17", "realtime:room é".encode(), b"cursor"
    frame = bytes([3, len(join_ref), len(ref), len(topic), len(event), 0, 1]) + join_ref + ref + topic + event + b"{}"
    assert phoenix.decode_binary(frame) == phoenix.Message("realtime:room é", "broadcast", {}, "17", "3")
    with pytest.raises(phoenix.BadMessage):
        phoenix.decode_binary(b"\x04\x00")
