"""The query language (DESIGN section 5) through HTTP, on every database of the matrix."""
from __future__ import annotations

import importlib
import json

import pytest
import sqlalchemy as sa
from envelope import assert_error, ok

from tiddly import (
    create_app,
    storage,  # noqa: F401 - writes NULLS FIRST/LAST for MySQL/MariaDB
)
from tiddly.config import Config

BOOKS = [  # ids 1..7, in this order
    {"title": "Dune", "author": "Herbert", "year": 1965, "isbn": "isbn-1"},
    {"title": "Emma", "author": "Austen", "year": 1815, "isbn": "isbn-2"},
    {"title": "Persuasion", "author": "Austen", "year": 1817, "isbn": None},
    {"title": "Ulysses", "author": "Joyce", "year": None, "isbn": "isbn-4"},
    {"title": "dubliners", "author": "Joyce", "year": 1914, "isbn": "isbn-5"},
    {"title": "Beloved", "author": "Morrison", "year": 1987, "isbn": "isbn-6"},
    {"title": "Sula", "author": "Morrison", "year": None, "isbn": "isbn-7"},
]


@pytest.fixture
def books(client):
    body = ok(client.post("/books", json=BOOKS), 201)
    assert body["ids"] == list(range(1, len(BOOKS) + 1))
    return client


def fetch(client, query, method="FETCH"):
    return client.open("/books", method=method, json=query)


def ids(client, query) -> list[int]:
    return [row["id"] for row in ok(fetch(client, query))["data"]]


def expected(predicate) -> list[int]:
    return [i for i, book in enumerate(BOOKS, 1) if predicate(book)]


# -- operators -----------------------------------------------------------------

@pytest.mark.parametrize("condition, predicate", [
    ({"year": 1965}, lambda b: b["year"] == 1965),
    ({"year": {"eq": 1815}}, lambda b: b["year"] == 1815),
    ({"author": {"ne": "Austen"}}, lambda b: b["author"] != "Austen"),
    ({"year": {"ne": 1965}}, lambda b: b["year"] is not None and b["year"] != 1965),
    ({"year": {"lt": 1914}}, lambda b: b["year"] is not None and b["year"] < 1914),
    ({"year": {"lte": 1914}}, lambda b: b["year"] is not None and b["year"] <= 1914),
    ({"year": {"gt": 1914}}, lambda b: b["year"] is not None and b["year"] > 1914),
    ({"year": {"gte": 1914}}, lambda b: b["year"] is not None and b["year"] >= 1914),
    ({"year": {"gte": 1815, "lt": 1965}}, lambda b: b["year"] is not None and 1815 <= b["year"] < 1965),
    ({"author": {"in": ["Joyce", "Herbert"]}}, lambda b: b["author"] in ("Joyce", "Herbert")),
    ({"author": {"nin": ["Joyce", "Herbert"]}}, lambda b: b["author"] not in ("Joyce", "Herbert")),
    ({"title": {"like": "D%"}}, lambda b: b["title"].startswith("D")),
    ({"title": {"like": "%u%"}}, lambda b: "u" in b["title"]),
    ({"title": {"like": "_mma"}}, lambda b: b["title"] == "Emma"),
    ({"title": {"ilike": "d%"}}, lambda b: b["title"].lower().startswith("d")),
    ({"title": {"ilike": "%SULA%"}}, lambda b: b["title"] == "Sula"),
    ({"year": {"between": [1815, 1914]}}, lambda b: b["year"] is not None and 1815 <= b["year"] <= 1914),
    ({"year": {"is": None}}, lambda b: b["year"] is None),
    ({"year": None}, lambda b: b["year"] is None),
    ({"year": {"eq": None}}, lambda b: b["year"] is None),
    ({"year": {"ne": None}}, lambda b: b["year"] is not None),
    ({"isbn": None, "author": "Austen"}, lambda b: b["isbn"] is None and b["author"] == "Austen"),
    ({"title": "dune"}, lambda b: False),  # equality is case-sensitive on every database
])
def test_operator(books, condition, predicate):
    result = ids(books, {"where": condition})
    assert result == expected(predicate)
    assert result or condition == {"title": "dune"}  # each case but one matches something


def test_empty_in_matches_nothing_and_empty_nin_everything(books):
    assert ids(books, {"where": {"author": {"in": []}}}) == []
    assert ids(books, {"where": {"author": {"nin": []}}}) == [1, 2, 3, 4, 5, 6, 7]
    assert ids(books, {"where": {"not": {"year": {"in": []}}}}) == [1, 2, 3, 4, 5, 6, 7]


def test_like_is_case_sensitive_and_ilike_is_not(books):
    assert ids(books, {"where": {"title": {"like": "d%"}}}) == [5]
    assert ids(books, {"where": {"title": {"like": "D%"}}}) == [1]
    assert ids(books, {"where": {"title": {"ilike": "D%"}}}) == [1, 5]


def test_nested_and_or_not(books):
    where = {"or": [{"author": "Austen"},
                    {"and": [{"author": "Joyce"}, {"year": {"gt": 1900}}]}]}
    assert ids(books, {"where": where}) == [2, 3, 5]
    assert ids(books, {"where": {"not": {"author": {"in": ["Austen", "Joyce"]}}}}) == [1, 6, 7]
    assert ids(books, {"where": {"not": {"or": [{"author": "Austen"}, {"year": None}]}}}) == [1, 5, 6]
    # top-level keys AND together, with the combinators beside them
    where = {"author": "Morrison", "or": [{"year": None}, {"year": {"lt": 1900}}]}
    assert ids(books, {"where": where}) == [7]
    assert ids(books, {"where": {"and": [{"not": {"year": None}}, {"title": {"ilike": "%e%"}}]}}) == [1, 2, 3, 5, 6]


def test_no_where_returns_every_row_in_pk_order(books):
    assert ids(books, {}) == [1, 2, 3, 4, 5, 6, 7]
    assert ids(books, {"where": {}}) == [1, 2, 3, 4, 5, 6, 7]
    assert [r["id"] for r in ok(books.open("/books", method="FETCH"))["data"]] == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("where, column", [
    ({"year": "1965"}, "year"),
    ({"year": {"in": "1965"}}, "year"),
    ({"year": {"in": [1965, "x"]}}, "year"),
    ({"year": {"between": [1]}}, "year"),
    ({"year": {"like": "19%"}}, "year"),
    ({"year": {"is": True}}, "year"),
    ({"title": {"is": "Dune"}}, "title"),
    ({"year": [1965, 1815]}, "year"),
    ({"title": {"gt": 5}}, "title"),
])
def test_operator_value_of_wrong_type_is_400_naming_column(books, where, column):
    body = assert_error(fetch(books, {"where": where}), 400, "bad_value")
    assert column in body["error"]


def test_unknown_operator_is_400(books):
    body = assert_error(fetch(books, {"where": {"year": {"regex": "19.*"}}}), 400, "unknown_operator")
    assert "regex" in body["error"] and "between" in body["error"]
    assert_error(fetch(books, {"where": {"year": {}}}), 400, "bad_query")


@pytest.mark.parametrize("where", [
    {"and": {"year": 1}}, {"or": []}, {"not": [{"year": 1}]}, {"not": {}}, [{"year": 1}], "year = 1",
])
def test_malformed_combinators_are_400(books, where):
    assert_error(fetch(books, {"where": where}), 400, "bad_query")


def test_where_nesting_limit(books):
    def nested(levels):
        where = {"year": 1965}
        for level in range(levels):
            where = {"and": [where]} if level % 2 else {"or": [where]}
        return where
    depth = Config().max_where_depth
    assert ids(books, {"where": nested(depth)}) == [1]
    body = assert_error(fetch(books, {"where": nested(depth + 1)}), 400, "bad_query")
    assert str(depth) in body["error"]
    assert_error(fetch(books, {"where": nested(200)}), 400, "bad_query")


def test_in_list_length_limit(books):
    limit = Config().max_in_length
    assert ids(books, {"where": {"year": {"in": list(range(1000, 1000 + limit))}}}) == [1, 2, 3, 5, 6]
    assert_error(fetch(books, {"where": {"year": {"in": list(range(limit + 1))}}}), 400, "bad_query")
    assert_error(fetch(books, {"where": {"year": {"nin": list(range(limit + 1))}}}), 400, "bad_query")


# -- orderby -------------------------------------------------------------------

def test_orderby_string_with_spaces_after_commas(books):
    assert ids(books, {"orderby": "author desc, title"}) == [6, 7, 4, 5, 1, 2, 3]
    assert ids(books, {"orderby": "author DESC,title desc"}) == [7, 6, 5, 4, 1, 3, 2]
    assert ids(books, {"orderby": "  author  asc ,  title  "}) == [2, 3, 1, 4, 5, 6, 7]


def test_orderby_list_form(books):
    assert ids(books, {"orderby": ["author desc", "title"]}) == [6, 7, 4, 5, 1, 2, 3]
    assert ids(books, {"orderby": ["author desc, title desc"]}) == [7, 6, 5, 4, 1, 3, 2]


def test_orderby_nulls_first_and_last_on_every_database(books):
    nulls = {4, 7}
    first = ids(books, {"orderby": "year nulls first"})
    assert first == [4, 7, 2, 3, 5, 1, 6]
    last = ids(books, {"orderby": "year asc nulls last"})
    assert last == [2, 3, 5, 1, 6, 4, 7]
    desc_first = ids(books, {"orderby": "year desc nulls first"})
    assert desc_first == [4, 7, 6, 1, 5, 3, 2]
    desc_last = ids(books, {"orderby": ["year DESC NULLS LAST"]})
    assert desc_last == [6, 1, 5, 3, 2, 4, 7]
    assert set(first[:2]) == set(last[-2:]) == set(desc_first[:2]) == set(desc_last[-2:]) == nulls


@pytest.mark.parametrize("dialect, written", [
    ("postgresql", "ORDER BY t.year DESC NULLS LAST"),  # native: an index on (year DESC NULLS LAST) serves it
    ("sqlite", "ORDER BY t.year DESC NULLS LAST"),
    ("mysql", "ORDER BY t.year IS NULL ASC, t.year DESC"),  # no NULLS LAST there: NULLs rank after the rest
    ("mariadb", "ORDER BY t.year IS NULL ASC, t.year DESC"),
])
def test_nulls_placement_is_written_in_each_databases_own_sql(dialect, written):
    module = importlib.import_module(f"sqlalchemy.dialects.{'mysql' if dialect == 'mariadb' else dialect}")
    kind = module.dialect(is_mariadb=True) if dialect == "mariadb" else module.dialect()
    t = sa.table("t", sa.column("year"))
    sql = str(sa.select(t.c.year).order_by(t.c.year.desc().nulls_last()).compile(dialect=kind))
    assert written in " ".join(sql.split())


@pytest.mark.parametrize("orderby", [
    "year sideways", "year nulls", "year desc nulls middle", "id; drop table books", "", " , ",
    {"year": "desc"}, ["year", 1], 5,
])
def test_bad_orderby_is_400(books, orderby):
    if orderby == "":  # an empty orderby means the default order
        assert ids(books, {"orderby": orderby}) == [1, 2, 3, 4, 5, 6, 7]
        return
    response = fetch(books, {"orderby": orderby})
    assert response.status_code == 400
    assert_error(response, 400, response.get_json()["code"])


def test_orderby_unknown_column_is_400_naming_it(books):
    body = assert_error(fetch(books, {"orderby": "year, rating desc"}), 400, "unknown_column")
    assert "rating" in body["error"]


def test_pk_tiebreaker_orders_equal_keys_and_pages_never_repeat_or_skip(client):
    rows = [{"title": f"t{i:02}", "author": "ABC"[i % 3], "year": 2000 + i % 2} for i in range(30)]
    ok(client.post("/books", json=rows), 201)
    # Move early rows in the physical order (PostgreSQL appends an updated row to the heap).
    for pk in (1, 2, 3, 4, 5, 10):
        ok(client.patch(f"/books/{pk}", json={"title": f"moved{pk}"}))
    for orderby, key in (("author", lambda r: r["author"]),
                         ("year desc, author", lambda r: (-r["year"], r["author"])),
                         ("author desc", lambda r: tuple(-ord(c) for c in r["author"]))):
        full = ok(client.open("/books", method="FETCH", json={"orderby": orderby, "limit": 100}))["data"]
        assert [r["id"] for r in full] == sorted(range(1, 31), key=lambda pk: (key(full_by(full, pk)), pk))
        for page_size in (1, 4, 7):
            seen = []
            for offset in range(0, 30, page_size):
                query = {"orderby": orderby, "limit": page_size, "offset": offset}
                seen += [r["id"] for r in ok(client.open("/books", method="FETCH", json=query))["data"]]
            assert seen == [r["id"] for r in full], (orderby, page_size)


def full_by(rows, pk):
    return next(r for r in rows if r["id"] == pk)


def test_orderby_on_pk_desc_is_not_overridden_by_tiebreaker(books):
    assert ids(books, {"orderby": "id desc"}) == [7, 6, 5, 4, 3, 2, 1]


# -- select --------------------------------------------------------------------

def test_select_list_and_comma_string(books):
    data = ok(fetch(books, {"select": ["title", "id"], "where": {"id": 1}}))["data"]
    assert data == [{"title": "Dune", "id": 1}]
    data = ok(fetch(books, {"select": "id, author ,year", "where": {"id": {"lte": 2}}}))["data"]
    assert data == [{"id": 1, "author": "Herbert", "year": 1965}, {"id": 2, "author": "Austen", "year": 1815}]
    assert ok(fetch(books, {"select": "isbn", "where": {"id": 3}}))["data"] == [{"isbn": None}]


def test_select_can_filter_and_order_on_unselected_columns(books):
    data = ok(fetch(books, {"select": ["title"], "where": {"author": "Austen"}, "orderby": "year desc"}))["data"]
    assert data == [{"title": "Persuasion"}, {"title": "Emma"}]


@pytest.mark.parametrize("selected, code", [
    ([], "bad_query"), ("", "unknown_column"), ({"id": True}, "bad_query"), (["id", 3], "unknown_column"),
    (["id", "rating"], "unknown_column"), ("id,,title", "unknown_column"),
])
def test_bad_select_is_400(books, selected, code):
    assert_error(fetch(books, {"select": selected}), 400, code)


# -- limit, offset, count ------------------------------------------------------

def test_limit_defaults_to_100_and_is_capped_at_1000(client):
    ok(client.post("/dual", json=[{"text": str(i)} for i in range(1001)]), 201)
    page = ok(client.open("/dual", method="FETCH", json={}))
    assert [r["id"] for r in page["data"]] == list(range(1, 101))
    assert len(ok(client.open("/dual", method="FETCH", json={"limit": 1000}))["data"]) == 1000
    assert len(ok(client.get("/dual?limit=1000&offset=1"))["data"]) == 1000
    assert ok(client.get("/dual"))["data"][-1]["id"] == 100
    body = assert_error(client.open("/dual", method="FETCH", json={"limit": 1001}), 400, "bad_query")
    assert "1000" in body["error"]
    assert_error(client.get("/dual?limit=1001"), 400, "bad_query")


def test_limit_cap_is_configurable(db_url):
    app = create_app(Config(database_url=db_url, max_limit=3, default_limit=2))
    try:
        client = app.test_client()
        ok(client.post("/dual", json=[{"text": "x"}] * 5), 201)
        assert len(ok(client.get("/dual"))["data"]) == 2
        assert len(ok(client.get("/dual?limit=3"))["data"]) == 3
        assert_error(client.get("/dual?limit=4"), 400, "bad_query")
    finally:
        app.extensions["tiddly"].db.dispose()


@pytest.mark.parametrize("key", ["limit", "offset"])
@pytest.mark.parametrize("value", [-1, 1.5, 2.0, "10", True, False, None, [1], {"n": 1}, 10**30])
def test_bad_limit_and_offset_are_400(books, key, value):
    assert_error(fetch(books, {key: value}), 400, "bad_query")


@pytest.mark.parametrize("query", ["limit=-1", "limit=abc", "limit=1.5", "limit=", "offset=-3", "offset=x",
                                   "limit=true", "count=maybe", "limit=1e3"])
def test_bad_paging_in_url_is_400(books, query):
    assert_error(books.get(f"/books?{query}"), 400, "bad_query")


def test_limit_zero_and_offset(books):
    assert ok(fetch(books, {"limit": 0}))["data"] == []
    assert ids(books, {"limit": 2, "offset": 3}) == [4, 5]
    assert ids(books, {"offset": 5}) == [6, 7]
    assert ids(books, {"offset": 50}) == []
    assert ids(books, {"limit": 3}) == [1, 2, 3]


def test_count_is_the_total_matching_rows_not_the_page(books):
    body = ok(fetch(books, {"where": {"year": {"ne": None}}, "limit": 2, "offset": 1, "count": True}))
    assert [r["id"] for r in body["data"]] == [2, 3]
    assert body["count"] == 5
    assert "count" not in ok(fetch(books, {"limit": 2}))
    assert "count" not in ok(fetch(books, {"count": False}))
    assert ok(fetch(books, {"where": {"author": "Nobody"}, "count": True})) == {
        "status": "success", "data": [], "count": 0}
    assert_error(fetch(books, {"count": "yes"}), 400, "bad_query")


def test_unknown_query_key_is_400(books):
    body = assert_error(fetch(books, {"wher": {"id": 1}}), 400, "bad_query")
    assert "wher" in body["error"]
    assert_error(fetch(books, {"where": {"id": 1}, "after": "abc", "sort": "id"}), 400, "bad_query")
    body = assert_error(books.get("/books?sort=id"), 400, "bad_query")
    assert "sort" in body["error"]


def test_query_must_be_an_object(books):
    for raw in ([], 5, "[1]", True):
        assert_error(fetch(books, raw), 400, "bad_query")


# -- one query, four ways to send it -------------------------------------------

QUERY = {"where": {"or": [{"author": {"in": ["Austen", "Joyce"]}}, {"year": {"gt": 1980}}]},
         "orderby": "year desc nulls last, title", "limit": 3, "offset": 1,
         "select": ["id", "title", "year"], "count": True}


def test_fetch_query_override_and_get_give_identical_data(books):
    by_fetch = ok(fetch(books, QUERY))
    assert by_fetch == {"status": "success", "count": 5, "next": by_fetch["next"], "data": [  # a full page
        {"id": 5, "title": "dubliners", "year": 1914},
        {"id": 3, "title": "Persuasion", "year": 1817},
        {"id": 2, "title": "Emma", "year": 1815},
    ]}
    assert ok(fetch(books, QUERY, method="QUERY")) == by_fetch
    override = books.post("/books", json=QUERY, headers={"X-HTTP-Method-Override": "FETCH"})
    assert ok(override) == by_fetch
    override = books.post("/books", json=QUERY, headers={"X-HTTP-Method-Override": "query"})
    assert ok(override) == by_fetch
    args = {"where": json.dumps(QUERY["where"]), "orderby": QUERY["orderby"], "limit": "3", "offset": "1",
            "select": "id,title,year", "count": "true"}
    assert ok(books.get("/books", query_string=args)) == by_fetch
    assert books.head("/books", query_string=args).status_code == 200
    assert ok(books.get("/books", query_string={**args, "select": "id, title, year"})) == by_fetch


def test_override_cannot_turn_post_into_a_write_verb(books):
    for verb in ("DELETE", "PUT", "GET", "bogus"):
        response = books.post("/books", json={"where": {"id": 1}}, headers={"X-HTTP-Method-Override": verb})
        assert_error(response, 400, "bad_query")
    assert ids(books, {}) == [1, 2, 3, 4, 5, 6, 7]


def test_get_with_bad_where_json_is_400(books):
    assert_error(books.get("/books?where={year:1}"), 400, "bad_json")
    assert_error(books.get("/books", query_string={"where": "[1]"}), 400, "bad_query")


def test_fetch_with_query_string_is_refused(books):
    assert_error(books.open("/books?limit=1", method="FETCH", json={}), 400, "bad_query")
