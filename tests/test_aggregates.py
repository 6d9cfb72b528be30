"""group / aggregate / having / distinct: the same answers on every database."""
from __future__ import annotations

import json

import pytest
from envelope import assert_error, ok

BOOKS = [
    ("Emma", "Austen", 1815), ("Persuasion", "Austen", 1817), ("Sanditon", "Austen", None),
    ("Ulysses", "Joyce", 1922), ("Dubliners", "Joyce", 1914),
    ("Beloved", "Morrison", 1987),
]


@pytest.fixture
def books(client):
    ok(client.post("/books", json=[{"title": t, "author": a, "year": y} for t, a, y in BOOKS]), 201)
    return client


def fetch(client, body):
    return client.open("/books", method="FETCH", json=body)


def test_group_with_every_function(books):
    body = {"group": ["author"], "orderby": "author",
            "aggregate": {"n": "count", "dated": "count:year", "years": "count_distinct:year",
                          "avg_year": "avg:year", "max_year": "max:year", "min_title": "min:title",
                          "total": "sum:year"}}
    assert ok(fetch(books, body))["data"] == [
        {"author": "Austen", "n": 3, "dated": 2, "years": 2, "avg_year": 1816.0, "max_year": 1817,
         "min_title": "Emma", "total": 3632},
        {"author": "Joyce", "n": 2, "dated": 2, "years": 2, "avg_year": 1918.0, "max_year": 1922,
         "min_title": "Dubliners", "total": 3836},
        {"author": "Morrison", "n": 1, "dated": 1, "years": 1, "avg_year": 1987.0, "max_year": 1987,
         "min_title": "Beloved", "total": 1987},
    ]


def test_having_orderby_an_aggregate_paging_and_count(books):
    body = {"group": "author", "aggregate": {"n": "count", "last": "max:year"},
            "having": {"n": {"gte": 2}}, "orderby": "last desc", "count": True}
    result = ok(fetch(books, body))
    assert result["data"] == [{"author": "Joyce", "n": 2, "last": 1922}, {"author": "Austen", "n": 3, "last": 1817}]
    assert result["count"] == 2
    paged = ok(fetch(books, {**body, "limit": 1, "offset": 1}))
    assert paged["data"] == [{"author": "Austen", "n": 3, "last": 1817}] and paged["count"] == 2
    having_or = {**body, "having": {"or": [{"n": 1}, {"last": {"lt": 1900}}]}, "orderby": "n"}
    assert [r["author"] for r in ok(fetch(books, having_or))["data"]] == ["Morrison", "Austen"]


def test_where_filters_rows_before_grouping_and_nulls_form_a_group(books):
    body = {"where": {"author": {"ne": "Morrison"}}, "group": ["year"], "aggregate": {"n": "count"},
            "orderby": "year nulls first"}
    assert ok(fetch(books, body))["data"] == [
        {"year": None, "n": 1}, {"year": 1815, "n": 1}, {"year": 1817, "n": 1},
        {"year": 1914, "n": 1}, {"year": 1922, "n": 1}]


def test_aggregate_without_group_is_one_row(books):
    body = {"aggregate": {"n": "count", "first": "min:year", "avg": "avg:year"}}
    assert ok(fetch(books, body))["data"] == [{"n": 6, "first": 1815, "avg": 1891.0}]


def test_distinct(books):
    assert ok(fetch(books, {"distinct": True, "select": ["author"], "orderby": "author desc"}))["data"] == [
        {"author": "Morrison"}, {"author": "Joyce"}, {"author": "Austen"}]
    body = ok(books.get("/books?distinct=true&select=author&orderby=author&count=true&limit=2"))
    assert body == {"status": "success", "count": 3, "data": [{"author": "Austen"}, {"author": "Joyce"}]}


def test_the_same_over_get(books):
    args = {"group": "author", "aggregate": json.dumps({"n": "count"}), "having": json.dumps({"n": {"gt": 1}}),
            "orderby": "n desc"}
    assert ok(books.get("/books", query_string=args))["data"] == [{"author": "Austen", "n": 3},
                                                                   {"author": "Joyce", "n": 2}]


@pytest.mark.parametrize("body, code", [
    ({"group": ["author"], "aggregate": {"n": "median:year"}}, "bad_query"),
    ({"group": ["author"], "aggregate": {"n": "sum:title"}}, "bad_query"),
    ({"group": ["author"], "aggregate": {"n": "avg"}}, "bad_query"),
    ({"group": ["author"], "aggregate": {"bad name": "count"}}, "bad_query"),
    ({"group": ["author"], "aggregate": {"author": "count"}}, "bad_query"),
    ({"group": ["author"], "aggregate": {"n": 5}}, "bad_query"),
    ({"group": ["author"], "aggregate": []}, "bad_query"),
    ({"group": ["nope"]}, "unknown_column"),
    ({"group": []}, "bad_query"),
    ({"group": ["author"], "select": ["title"]}, "bad_query"),
    ({"group": ["author"], "after": "x"}, "bad_query"),
    ({"group": ["author"], "include": ["items"]}, "bad_query"),
    ({"group": ["author"], "distinct": True}, "bad_query"),
    ({"group": ["author"], "having": {"title": "x"}}, "unknown_column"),
    ({"group": ["author"], "aggregate": {"n": "count"}, "having": {"n": {"gt": "many"}}}, "bad_value"),
    ({"group": ["author"], "orderby": "title"}, "unknown_column"),
    ({"distinct": "yes", "select": ["author"]}, "bad_query"),
    ({"distinct": True, "select": ["author"], "having": {"author": "x"}}, "bad_query"),
    ({"group": ["author"], "aggregate": {"n": "count:password"}}, "unknown_column"),
])
def test_bad_aggregate_queries_are_400s(books, body, code):
    assert_error(fetch(books, body), 400, code)
