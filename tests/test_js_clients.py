"""The real JavaScript clients against a real `tiddly serve` at /rest/v1 (issue 12, item 7).

supabase-js (``createClient(url, key)``, exactly as an app calls it) and bare postgrest-js
(``new PostgrestClient(url + '/rest/v1', {headers})``) from npm, pinned by
tests/clients/package-lock.json, do what a front-end does, on every database. Each scenario
below is the client's own call chain written in Python, ``supabase("books").select("title")
.eq("year", 1965)``, and a check of what the client returned (``status``, ``data``, ``error``,
``count``); tests/clients/run.mjs runs every scenario in one node process per database. The
expected answers are real PostgREST's: the clients are the judge.

Scenarios run one after another against one server per database: reads use the seeded books,
stores and items and never write them; each write scenario touches only rows it made itself.
"""
from __future__ import annotations

import csv
import io
import json
import subprocess
from types import SimpleNamespace

import pytest
import requests
import nodejs
from conftest import DATABASES, clean_database
from keys import new_key
from serving import LiveServer

ERROR_KEYS = {"code", "message", "details", "hint"}


# -- the scenarios, as data ---------------------------------------------------------

class Js:
    """A postgrest-js call chain recorded in Python. Python's reserved words take a trailing
    underscore that is dropped: ``.from_("books")``, ``.in_(...)``, ``.is_(...)``, ``.not_(...)``."""

    def __init__(self, client: str, key: str | None, auth=("apikey", "bearer"), calls=()):
        self.step = {"client": client, "key": key, "auth": list(auth), "calls": list(calls)}

    def __getattr__(self, method: str):
        if method.startswith("__"):
            raise AttributeError(method)
        step = self.step
        return lambda *args: Js(step["client"], step["key"], step["auth"],
                                [*step["calls"], [method.rstrip("_"), *args]])


def supabase(table: str, key: str = "write") -> Js:
    return Js("supabase", key).from_(table)


def postgrest(table: str, key: str | None = "write", auth=("apikey", "bearer")) -> Js:
    return Js("postgrest", key, auth).from_(table)


SCENARIOS: dict = {}


def scenario(*steps: Js):
    """Register the decorated check for these steps; it gets one answer per step."""
    def register(check):
        SCENARIOS[check.__name__] = ([s.step for s in steps], check)
        return check
    return register


def rows(answer, status=200) -> list:
    assert answer.error is None and answer.status == status, (answer.status, answer.error)
    return answer.data


def column(answer, name: str = "title") -> list:
    return [row[name] for row in rows(answer)]


def failed(answer, status: int, code: str | None = None) -> dict:
    """A PostgREST error: the status, all four keys of the body, and no data."""
    assert (answer.status, answer.data) == (status, None), (answer.status, answer.data, answer.error)
    assert set(answer.error) >= ERROR_KEYS, answer.error
    if code is not None:
        assert answer.error["code"] == code, answer.error
    return answer.error


# -- seed data (books, stores and items are only ever read) -----------------------------

BOOKS = [
    {"title": "Dune", "author": "Frank Herbert", "year": 1965, "isbn": "978-0441172719"},
    {"title": "Emma", "author": "Jane Austen", "year": 1815, "isbn": "978-0141439587"},
    {"title": "Persuasion", "author": "Jane Austen", "year": 1817, "isbn": None},
    {"title": "Hyperion", "author": "Dan Simmons", "year": 1989, "isbn": None},
    {"title": "The Hobbit", "author": "J. R. R. Tolkien", "year": 1937, "isbn": None},
    {"title": "Beowulf", "author": "Unknown", "year": None, "isbn": None},
    {"title": "Tales, Old and New", "author": "Unknown", "year": None, "isbn": None},
]
ALL_TITLES = sorted(b["title"] for b in BOOKS)
STORE_ITEMS = {
    "Corner Shop": [("apple", 0.5), ("bread", 2.25), ("cheese", 7.0)],
    "Empty Shelf": [],
    "Market Hall": [("apple", 0.45), ("fish", 12.5), ("olive oil", 9.0)],
}


# -- reads: select, filters, order, range, count ----------------------------------------

@scenario(supabase("books").select("*").eq("title", "Dune"))
def select_star(answer):
    [book] = rows(answer)
    assert isinstance(book.pop("id"), int)
    assert book == BOOKS[0]


@scenario(supabase("books").select("name:title, published:year").eq("year", 1965))
def select_aliases(answer):
    assert rows(answer) == [{"name": "Dune", "published": 1965}]


@scenario(supabase("books").select("title").neq("author", "Jane Austen").order("title"),
          supabase("books").select("title").neq("year", 1965).order("title"),
          supabase("books").select("title").not_("year", "eq", 1965).order("title"))
def filter_neq(answer, null_is_not_unequal, not_eq):
    assert column(answer) == ["Beowulf", "Dune", "Hyperion", "Tales, Old and New", "The Hobbit"]
    assert column(null_is_not_unequal) == column(not_eq) == ["Emma", "Hyperion", "Persuasion", "The Hobbit"]


@scenario(supabase("books").select("title").gte("year", 1815).lt("year", 1900).order("year"),
          supabase("books").select("title").gt("year", 1900).lte("year", 1965).order("year"))
def filter_comparisons(before_1900, after_1900):
    assert column(before_1900) == ["Emma", "Persuasion"]
    assert column(after_1900) == ["The Hobbit", "Dune"]


@scenario(supabase("books").select("title").like("author", "*Austen").order("title"),
          supabase("books").select("title").like("title", "%on%").order("title"),
          supabase("books").select("title").like("title", "dune"))
def filter_like(star, percent, case_sensitive):
    assert column(star) == ["Emma", "Persuasion"]
    assert column(percent) == ["Hyperion", "Persuasion"]
    assert column(case_sensitive) == []


@scenario(supabase("books").select("title").ilike("title", "%DUNE%"),
          supabase("books").select("title").ilike("author", "jane*").order("title"))
def filter_ilike(percent, star):
    assert column(percent) == ["Dune"]
    assert column(star) == ["Emma", "Persuasion"]


@scenario(supabase("books").select("title").in_("title", ["Dune", "Tales, Old and New", "Nope"]).order("title"),
          supabase("books").select("title").in_("year", [1815, 1817]).order("title"))
def filter_in_with_quoted_items(quoted, numbers):
    assert column(quoted) == ["Dune", "Tales, Old and New"]
    assert column(numbers) == ["Emma", "Persuasion"]


@scenario(supabase("books").select("title").is_("year", None).order("title"))
def filter_is_null(answer):
    assert column(answer) == ["Beowulf", "Tales, Old and New"]


@scenario(supabase("books").select("title").not_("year", "is", None).order("title"),
          supabase("books").select("title").not_("author", "eq", "Unknown").not_("title", "in", "(Dune,Emma)")
          .order("title"))
def filter_not(not_null, not_eq_not_in):
    assert column(not_null) == ["Dune", "Emma", "Hyperion", "Persuasion", "The Hobbit"]
    assert column(not_eq_not_in) == ["Hyperion", "Persuasion", "The Hobbit"]


@scenario(supabase("books").select("title").or_("year.lt.1816,author.eq.Dan Simmons").order("title"),
          supabase("books").select("title").or_("year.is.null,and(year.gt.1900,year.lt.1950)").order("title"),
          supabase("books").select("title").or_("title.ilike.*dune*,author.ilike.*SIMMONS").order("title"))
def filter_or(flat, nested_and, ilike):
    assert column(ilike) == ["Dune", "Hyperion"]
    assert column(flat) == ["Emma", "Hyperion"]
    assert column(nested_and) == ["Beowulf", "Tales, Old and New", "The Hobbit"]


@scenario(supabase("books").select("title").order("year", {"ascending": False, "nullsFirst": False}).order("title"),
          supabase("books").select("title").order("year", {"nullsFirst": True}).order("title"))
def order_nulls_last_and_first(desc_nullslast, asc_nullsfirst):
    assert column(desc_nullslast) == ["Hyperion", "Dune", "The Hobbit", "Persuasion", "Emma",
                                      "Beowulf", "Tales, Old and New"]
    assert column(asc_nullsfirst) == ["Beowulf", "Tales, Old and New", "Emma", "Persuasion", "The Hobbit",
                                      "Dune", "Hyperion"]


@scenario(supabase("books").select("title").order("year", {"ascending": False}).order("title"),
          supabase("books").select("title").order("year").order("title"))
def order_puts_nulls_where_postgresql_does(desc, asc):
    """PostgreSQL sorts NULL as larger than any value: first descending, last ascending."""
    assert column(desc)[:2] == ["Beowulf", "Tales, Old and New"]
    assert column(asc)[-2:] == ["Beowulf", "Tales, Old and New"]


@scenario(supabase("books").select("title").match({"author": "Jane Austen", "year": 1815}),
          supabase("books").select("title").filter("year", "in", "(1815,1817)").order("title"),
          supabase("books").select("author").eq("title", "Tales, Old and New"))
def filter_match_filter_and_unquoted_eq(matched, raw_filter, comma_value):
    assert column(matched) == ["Emma"]
    assert column(raw_filter) == ["Emma", "Persuasion"]
    assert rows(comma_value) == [{"author": "Unknown"}]


@scenario(supabase("books").select("title").order("title").range(1, 3),
          supabase("books").select("title").order("title").limit(2))
def range_and_limit(page, limited):
    assert column(page) == ALL_TITLES[1:4]
    assert column(limited) == ALL_TITLES[:2]


@scenario(supabase("books").select("title", {"count": "exact"}).order("title").range(0, 2),
          supabase("books").select("*", {"count": "exact"}).eq("author", "Jane Austen"))
def count_exact(partial_page, whole):
    assert (partial_page.count, len(rows(partial_page, status=206))) == (len(BOOKS), 3)
    assert (whole.count, len(rows(whole))) == (2, 2)


@scenario(supabase("books").select("title").order("title").range(100, 109),
          supabase("books").select("title", {"count": "exact"}).order("title").range(100, 109))
def range_past_the_end(uncounted, counted):
    assert rows(uncounted) == []
    assert "only 7 rows" in failed(counted, 416, "PGRST103")["details"]


@scenario(supabase("books").select("*", {"count": "exact", "head": True}).is_("year", None),
          supabase("books").select("*", {"count": "exact", "head": True}),
          supabase("books").select("*", {"count": "estimated", "head": True}),
          supabase("books").select("*", {"count": "exact", "head": True}).eq("title", "No such book"))
def count_head(nulls, everything, estimated, nothing):
    assert (nothing.status, nothing.count) == (200, 0)
    assert (nulls.status, nulls.data, nulls.error, nulls.count) == (200, None, None, 2)
    assert (everything.status, everything.count) == (200, len(BOOKS))
    assert estimated.status == 200 and isinstance(estimated.count, int)


# -- embedding --------------------------------------------------------------------

@scenario(supabase("stores").select("name, items(name, price)").order("name")
          .order("name", {"referencedTable": "items"}))
def embed_stores_with_their_items(answer):
    assert rows(answer) == [{"name": store, "items": [{"name": n, "price": p} for n, p in items]}
                            for store, items in STORE_ITEMS.items()]


@scenario(supabase("items").select("name, price, stores(name)").eq("name", "fish"),
          supabase("items").select("name, store:stores(name)").eq("name", "apple").order("price"))
def embed_items_with_their_store(fish, apples):
    assert rows(fish) == [{"name": "fish", "price": 12.5, "stores": {"name": "Market Hall"}}]
    assert rows(apples) == [{"name": "apple", "store": {"name": "Market Hall"}},
                            {"name": "apple", "store": {"name": "Corner Shop"}}]


@scenario(supabase("items").select("name, stores(name, items(name))").eq("name", "fish")
          .order("name", {"referencedTable": "stores.items"}))
def embed_nested(answer):
    assert rows(answer) == [{"name": "fish", "stores": {
        "name": "Market Hall", "items": [{"name": "apple"}, {"name": "fish"}, {"name": "olive oil"}]}}]


@scenario(supabase("stores").select("name, items(name, price)").eq("name", "Market Hall").lt("items.price", 10)
          .order("price", {"referencedTable": "items", "ascending": False}).limit(1, {"referencedTable": "items"}))
def embed_with_filter_order_limit(answer):
    assert rows(answer) == [{"name": "Market Hall", "items": [{"name": "olive oil", "price": 9.0}]}]


@scenario(supabase("stores").select("name, items(name)").eq("name", "Corner Shop")
          .order("name", {"referencedTable": "items"}).range(1, 2, {"referencedTable": "items"}),
          supabase("stores").select("name, items(name)").eq("name", "Corner Shop")
          .or_("name.eq.apple,price.gt.5", {"referencedTable": "items"}).order("name", {"referencedTable": "items"}))
def embed_range_and_or(ranged, either):
    assert rows(ranged) == [{"name": "Corner Shop", "items": [{"name": "bread"}, {"name": "cheese"}]}]
    assert rows(either) == [{"name": "Corner Shop", "items": [{"name": "apple"}, {"name": "cheese"}]}]


@scenario(supabase("stores").select("name, items!inner(name)").eq("items.name", "bread"),
          supabase("stores").select("name, items(name)").eq("items.name", "bread").order("name"),
          supabase("items").select("name, stores!inner(name)").eq("stores.name", "Market Hall").order("name"))
def embed_inner_filters_the_parents(inner, plain, by_their_store):
    assert column(by_their_store, "name") == ["apple", "fish", "olive oil"]
    assert rows(inner) == [{"name": "Corner Shop", "items": [{"name": "bread"}]}]
    assert rows(plain) == [{"name": "Corner Shop", "items": [{"name": "bread"}]},
                           {"name": "Empty Shelf", "items": []}, {"name": "Market Hall", "items": []}]


@scenario(supabase("items").select("name, stores(name)").order("stores(name)", {"ascending": False}).order("name"),
          supabase("items").select("name, store:stores(name)").order("store(name)").order("price", {"ascending": False}),
          supabase("stores").select("name, items(name)").order("items(name)"),
          supabase("items").select("name").order("stores(name)"))
def order_by_a_to_one_embedded_column(by_store_desc, by_alias, to_many, not_embedded):
    assert [(row["stores"]["name"], row["name"]) for row in rows(by_store_desc)] == [
        ("Market Hall", "apple"), ("Market Hall", "fish"), ("Market Hall", "olive oil"),
        ("Corner Shop", "apple"), ("Corner Shop", "bread"), ("Corner Shop", "cheese")]
    assert column(by_alias, "name") == ["cheese", "bread", "apple", "fish", "olive oil", "apple"]
    assert "many-to-one" in failed(to_many, 400, "PGRST118")["details"]
    failed(not_embedded, 400, "PGRST108")


# -- single, maybeSingle, csv ---------------------------------------------------------

@scenario(supabase("books").select("title").eq("year", 1965).single(),
          supabase("books").select("title").eq("year", 1).single(),
          supabase("books").select("title").eq("author", "Jane Austen").single())
def single(one, none, many):
    assert rows(one) == {"title": "Dune"}
    assert "0 rows" in failed(none, 406, "PGRST116")["details"]
    assert "2 rows" in failed(many, 406, "PGRST116")["details"]


@scenario(supabase("books").select("title").eq("year", 1965).maybeSingle(),
          supabase("books").select("title").eq("year", 1).maybeSingle(),
          supabase("books").select("title").eq("author", "Jane Austen").maybeSingle(),
          supabase("dual").update({"text": "never"}).eq("text", "no such row").select().maybeSingle())
def maybe_single(one, none, many, write_none):
    assert rows(one) == {"title": "Dune"}
    assert rows(none) is None
    failed(many, 406, "PGRST116")
    assert rows(write_none) is None


@scenario(supabase("books").select("title,year").in_("title", ["Dune", "Emma", "Tales, Old and New"])
          .order("title").csv())
def csv_output(answer):
    text = rows(answer)
    assert isinstance(text, str)
    assert list(csv.reader(io.StringIO(text))) == [
        ["title", "year"], ["Dune", "1965"], ["Emma", "1815"], ["Tales, Old and New", ""]]
    assert not text.endswith("\n"), "PostgREST joins the lines with \\n and ends without one"


# -- writes -------------------------------------------------------------------------

@scenario(supabase("dual").insert({"text": "insert one"}),
          supabase("dual").select("text").eq("text", "insert one"))
def insert_object(inserted, read):
    assert (inserted.status, inserted.data, inserted.error) == (201, None, None)
    assert rows(read) == [{"text": "insert one"}]


@scenario(supabase("dual").insert([{"text": "insert a"}, {"text": "insert b"}]),
          supabase("dual").select("text").in_("text", ["insert a", "insert b"]).order("text"))
def insert_array(inserted, read):
    assert (inserted.status, inserted.data, inserted.error) == (201, None, None)
    assert column(read, "text") == ["insert a", "insert b"]


@scenario(supabase("dual").insert({"text": "insert select"}).select(),
          supabase("dual").insert([{"text": "insert x"}, {"text": "insert y"}]).select("text"),
          supabase("dual").insert({"text": "insert single"}).select("text").single(),
          supabase("dual").insert({"text": "insert counted"}, {"count": "exact"}).select("text"))
def insert_select(one, many, single_row, counted):
    [row] = rows(one, status=201)
    assert set(row) == {"id", "text"} and row["text"] == "insert select"
    assert rows(many, status=201) == [{"text": "insert x"}, {"text": "insert y"}]
    assert rows(single_row, status=201) == {"text": "insert single"}
    assert (rows(counted, status=201), counted.count) == ([{"text": "insert counted"}], 1)


@scenario(supabase("dual").insert([{"text": "missing a"}, {}], {"defaultToNull": False}).select("text"))
def insert_missing_default(answer):
    assert rows(answer, status=201) == [{"text": "missing a"}, {"text": None}]


@scenario(supabase("user").insert([{"email": "twice@example.com"}, {"email": "twice@example.com"}]),
          supabase("user").select("email").eq("email", "twice@example.com"))
def insert_array_is_all_or_nothing(inserted, read):
    failed(inserted, 409, "23505")
    assert rows(read) == []


@scenario(supabase("user").insert({"email": "upsert@example.com", "name": "Before"}),
          supabase("user").upsert({"email": "upsert@example.com", "name": "After"}, {"onConflict": "email"})
          .select("email, name"),
          supabase("user").upsert([{"email": "upsert@example.com", "name": "Again"},
                                   {"email": "upsert2@example.com", "name": "New"}], {"onConflict": "email"}),
          supabase("user").select("email, name").like("email", "upsert*").order("email"))
def upsert_on_conflict(inserted, merged, merged_array, read):
    assert inserted.status == 201
    assert merged.error is None and merged.status in (200, 201)
    assert merged.data == [{"email": "upsert@example.com", "name": "After"}]
    assert merged_array.error is None and merged_array.status in (200, 201)
    assert rows(read) == [{"email": "upsert2@example.com", "name": "New"},
                          {"email": "upsert@example.com", "name": "Again"}]


@scenario(supabase("user").upsert({"id": 1, "email": "login@example.com", "name": "Renamed"}).select("id, name"),
          supabase("user").select("id, name").eq("email", "login@example.com"))
def upsert_by_primary_key(merged, read):
    """The seeded login user has id 1: upsert's default conflict target is the primary key."""
    assert merged.error is None and merged.status in (200, 201), (merged.status, merged.error)
    assert merged.data == rows(read) == [{"id": 1, "name": "Renamed"}]


@scenario(supabase("user").insert({"email": "ignore@example.com", "name": "Kept"}),
          supabase("user").upsert({"email": "ignore@example.com", "name": "Ignored"},
                                  {"onConflict": "email", "ignoreDuplicates": True}).select("name"),
          supabase("user").upsert([{"email": "ignore@example.com", "name": "Ignored"},
                                   {"email": "ignore2@example.com", "name": "Added"}],
                                  {"onConflict": "email", "ignoreDuplicates": True}).select("name"),
          supabase("user").select("name").like("email", "ignore*").order("email"))
def upsert_ignore_duplicates(inserted, ignored, mixed, read):
    """Only the rows inserted come back; an ignored one is not returned (ON CONFLICT DO NOTHING)."""
    assert inserted.status == 201
    assert ignored.error is None and ignored.status in (200, 201) and ignored.data == []
    assert rows(mixed, status=201) == [{"name": "Added"}]
    assert rows(read) == [{"name": "Added"}, {"name": "Kept"}]


@scenario(supabase("dual").insert({"text": "update me"}),
          supabase("dual").update({"text": "updated"}).eq("text", "update me").select("text"),
          supabase("dual").update({"text": "updated twice"}).eq("text", "updated"),
          supabase("dual").select("text").in_("text", ["update me", "updated", "updated twice"]))
def update_eq(inserted, returned, minimal, read):
    assert rows(returned) == [{"text": "updated"}]
    assert (minimal.status, minimal.data, minimal.error) == (204, None, None)
    assert rows(read) == [{"text": "updated twice"}]


@scenario(supabase("dual").insert([{"text": "delete me"}, {"text": "delete me too"}]),
          supabase("dual").delete().eq("text", "delete me"),
          supabase("dual").delete().eq("text", "delete me too").select("text"),
          supabase("dual").select("text").like("text", "delete*"))
def delete_eq(inserted, minimal, returned, read):
    assert (minimal.status, minimal.data, minimal.error) == (204, None, None)
    assert rows(returned) == [{"text": "delete me too"}]
    assert rows(read) == []


@scenario(supabase("dual").insert({"text": "survivor"}),
          supabase("dual").update({"text": "clobbered"}),
          supabase("dual").delete(),
          supabase("dual").select("text").in_("text", ["survivor", "clobbered"]))
def unfiltered_update_and_delete_are_refused(inserted, update, delete, read):
    failed(update, 400, "21000")  # as PostgREST with pg-safeupdate (Supabase's setup) answers
    failed(delete, 400, "21000")
    assert rows(read) == [{"text": "survivor"}]


@scenario(supabase("dual").insert([{"text": "limit a"}, {"text": "limit b"}, {"text": "limit c"}]),
          supabase("dual").update({"text": "limit z"}).like("text", "limit*").order("text", {"ascending": False})
          .limit(1).select("text"),
          supabase("dual").delete().like("text", "limit*").order("text").limit(2),
          supabase("dual").delete().like("text", "limit*").order("text").range(1, 1).select("text"),
          supabase("dual").select("text").like("text", "limit*"))
def limited_update_and_delete(inserted, updated, deleted, none_at_offset, read):
    """limit (and offset) on PATCH and DELETE change only those of the filtered rows, in order."""
    assert rows(updated) == [{"text": "limit z"}]
    assert (deleted.status, deleted.error) == (204, None)
    assert rows(none_at_offset) == []
    assert column(read, "text") == ["limit z"]


@scenario(supabase("dual").insert([{"text": "single a"}, {"text": "single b"}]),
          supabase("dual").update({"text": "single c"}).like("text", "single*").select("text").single(),
          supabase("dual").delete().eq("text", "single a").select("text").single(),
          supabase("dual").delete().eq("text", "no such row").select("text").single(),
          supabase("dual").select("text").like("text", "single*").order("text"))
def single_on_writes_rolls_back_unless_one_row(inserted, two, one, none, read):
    """Accept: application/vnd.pgrst.object+json on a write: exactly one row, or a 406 and nothing written."""
    assert "2 rows" in failed(two, 406, "PGRST116")["details"]
    assert rows(one) == {"text": "single a"}
    failed(none, 406, "PGRST116")
    assert column(read, "text") == ["single b"]


@scenario(supabase("dual").insert({"text": "counted"}, {"count": "exact"}),
          supabase("dual").update({"text": "counted too"}, {"count": "exact"}).eq("text", "counted"),
          supabase("dual").delete({"count": "exact"}).eq("text", "counted too").select("text"),
          Js("supabase", "write").schema("nope").from_("dual").insert({"text": "other schema"}),
          supabase("books").select("title").in_("id", []),
          supabase("books").select("title").not_("id", "in", "()").order("title"))
def counts_on_writes_content_profile_and_empty_in(inserted, updated, deleted, other_schema, none, every):
    assert (inserted.status, inserted.count) == (201, 1)
    assert (updated.status, updated.count) == (204, 1)
    assert (rows(deleted), deleted.count) == ([{"text": "counted too"}], 1)
    failed(other_schema, 406, "PGRST106")
    assert rows(none) == []
    assert column(every) == ALL_TITLES


# -- errors the app branches on ----------------------------------------------------------

@scenario(supabase("user").insert({"email": "unique@example.com"}),
          supabase("user").insert({"email": "unique@example.com"}))
def unique_violation_is_23505(first, second):
    assert first.status == 201
    failed(second, 409, "23505")


@scenario(supabase("items").insert({"name": "ghost", "price": 1.0, "store_id": 999999}))
def foreign_key_violation_is_23503(answer):
    failed(answer, 409, "23503")


ODD_TEXT = "Brontë & co. + 100% \"quoted\" a=b?c#d/é 🚀"


@scenario(supabase("dual").insert({"text": ODD_TEXT}),
          supabase("dual").select("text").eq("text", ODD_TEXT),
          supabase("dual").select("text").in_("text", [ODD_TEXT, "x"]),
          supabase("dual").select("text").like("text", "Brontë & co. + 100*"))
def values_with_reserved_and_unicode_characters(inserted, equal, listed, pattern):
    assert inserted.status == 201
    assert rows(equal) == rows(listed) == rows(pattern) == [{"text": ODD_TEXT}]


@scenario(supabase("dual").insert([{"text": "max a"}, {"text": "max b"}]),
          supabase("dual").update({"text": "max c"}).like("text", "max*").maxAffected(1),
          supabase("dual").delete().like("text", "max*").maxAffected(1),
          supabase("dual").update({"text": "max c"}).eq("text", "max a").maxAffected(1).select("text"),
          supabase("dual").select("text").like("text", "max*").order("text"))
def max_affected(inserted, too_many_updated, too_many_deleted, one, read):
    failed(too_many_updated, 400, "PGRST124")
    failed(too_many_deleted, 400, "PGRST124")
    assert rows(one) == [{"text": "max c"}]
    assert column(read, "text") == ["max b", "max c"]


@scenario(supabase("dual").insert({"no_such_column": 1}),
          supabase("books").insert({"title": "Typo", "author": "Nobody", "year": "nineteen"}),
          supabase("books").insert({"author": "Nobody"}),
          supabase("books").select("title").eq("year", "nineteen"))
def bad_writes_and_filters(unknown_column, bad_number, missing_not_null, bad_filter):
    failed(unknown_column, 400, "PGRST204")
    failed(bad_number, 400, "22P02")
    failed(missing_not_null, 400, "23502")
    failed(bad_filter, 400, "22P02")


@scenario(supabase("no_such_table").select("*"),
          Js("supabase", "write").schema("no_such_schema").from_("books").select("title"),
          Js("supabase", "write").rpc("no_such_function", {"a": 1}))
def unknown_table_schema_and_function(table, schema, function):
    failed(table, 404, "PGRST205")
    failed(schema, 406, "PGRST106")
    failed(function, 404, "PGRST202")


@scenario(Js("supabase", "write").rpc("count_books"),
          Js("supabase", "write").rpc("count_books", {"since": 1900}, {"get": True}),
          Js("postgrest", "write").rpc("count_books", {}, {"count": "exact"}),
          supabase("books").select("title").textSearch("title", "dune"),
          supabase("books").select("title").textSearch("title", "'dune' & 'arrakis'",
                                                       {"type": "websearch", "config": "english"}),
          supabase("books").select("title").contains("title", ["Dune"]),
          supabase("books").select("title").containedBy("author", "Frank"),
          supabase("books").select("title").overlaps("title", ["a", "b"]),
          supabase("books").select("title").filter("title", "imatch", "^d"),
          supabase("books").select("title").explain(),
          supabase("books").select("title").geojson())
def what_is_not_supported_is_a_clean_postgrest_error(rpc_post, rpc_get, rpc_counted, fts, wfts, contains,
                                                     contained, overlaps, regex, explain, geojson):
    """The client surfaces each as an error it can read: RPC a 404; an operator a column's type
    lacks PostgreSQL's 42883; what only PostgreSQL has (text search, plans) a PGRST127 elsewhere."""
    for rpc in (rpc_post, rpc_get, rpc_counted):
        assert "count_books" in failed(rpc, 404, "PGRST202")["message"]
    for refused, operator in ((contains, "@>"), (contained, "<@"), (overlaps, "&&")):  # on text columns
        assert f"text {operator} unknown" in failed(refused, 400, "42883")["message"]
    assert column(regex) == ["Dune"]
    if fts.status == 200:  # PostgreSQL: the title made a document
        assert column(fts) == ["Dune"] and column(wfts) == [] and "Aggregate" in explain.data
    else:
        for postgresql_only in (fts, wfts, explain):
            failed(postgresql_only, 400, "PGRST127")
    failed(geojson, 406, "PGRST107")  # no column holds geometries


# -- keys: createClient(url, key) and bare postgrest-js --------------------------------

@scenario(supabase("books", key="read").select("title").eq("year", 1965),
          supabase("books", key="wrong").select("title"),
          supabase("dual", key="wrong").insert({"text": "wrong key"}))
def create_client_with_a_key_and_with_a_wrong_one(good, wrong_read, wrong_write):
    assert rows(good) == [{"title": "Dune"}]
    failed(wrong_read, 401, "PGRST301")
    failed(wrong_write, 401, "PGRST301")


@scenario(supabase("dual", key="read").insert({"text": "read key wrote"}),
          supabase("dual", key="read").update({"text": "read key wrote"}).eq("id", 1),
          supabase("dual", key="read").delete().eq("id", 1),
          supabase("dual").select("text").eq("text", "read key wrote"))
def read_key_cannot_write(insert, update, delete, read):
    failed(insert, 403, "42501")
    failed(update, 403, "42501")
    failed(delete, 403, "42501")
    assert rows(read) == []


@scenario(supabase("books", key="books_only").select("title").eq("year", 1965),
          supabase("stores", key="books_only").select("name"),
          supabase("items", key="items_only").select("name").eq("name", "fish"),
          supabase("items", key="items_only").select("name, stores(name)").eq("name", "fish"),
          supabase("items", key="items_only").select("name, shops(name)").eq("name", "fish"))
def key_limited_to_a_table(own_table, other_table, own_items, embedded_other, embedded_nothing):
    """A relation to a table the key may not use is answered as one that does not exist."""
    assert rows(own_table) == [{"title": "Dune"}]
    failed(other_table, 403, "42501")
    assert rows(own_items) == [{"name": "fish"}]
    hidden, absent = failed(embedded_other, 400, "PGRST200"), failed(embedded_nothing, 400, "PGRST200")
    assert hidden["hint"] is None and absent["hint"] is None  # no near name among the relations it may follow


@scenario(supabase("books", key="token").select("title").eq("year", 1965),
          postgrest("books", key="token", auth=["bearer"]).select("title").eq("year", 1965),
          supabase("dual", key="token").insert({"text": "token wrote"}).select("text"))
def login_token_used_as_the_key(create_client, bearer, write):
    assert rows(create_client) == rows(bearer) == [{"title": "Dune"}]
    assert rows(write, status=201) == [{"text": "token wrote"}]


@scenario(postgrest("books").select("title").gte("year", 1900).order("title"),
          postgrest("books", auth=["apikey"]).select("title").eq("year", 1965),
          postgrest("books", auth=["bearer"]).select("title").eq("year", 1965),
          postgrest("books", key=None).select("title"),
          postgrest("books", key="wrong").select("title"))
def bare_postgrest_js_with_headers(both, apikey_only, bearer_only, no_key, wrong_key):
    assert column(both) == ["Dune", "Hyperion", "The Hobbit"]
    assert rows(apikey_only) == rows(bearer_only) == [{"title": "Dune"}]
    failed(no_key, 401, "PGRST302")
    failed(wrong_key, 401, "PGRST301")


@scenario(postgrest("dual").insert({"text": "bare insert"}).select("text"),
          postgrest("dual").update({"text": "bare update"}).eq("text", "bare insert").select("text"),
          postgrest("dual").delete().eq("text", "bare update").select("text"),
          postgrest("user").insert([{"email": "bare@example.com"}, {"email": "bare@example.com"}]))
def bare_postgrest_js_writes(inserted, updated, deleted, duplicate):
    assert rows(inserted, status=201) == [{"text": "bare insert"}]
    assert rows(updated) == [{"text": "bare update"}]
    assert rows(deleted) == [{"text": "bare update"}]
    failed(duplicate, 409, "23505")


# -- column policies: user.password is write-only -----------------------------------------

@scenario(supabase("user").insert({"email": "pw@example.com", "name": "Pat", "password": "s3cret pass"}).select(),
          supabase("user").select("*").eq("email", "pw@example.com"),
          supabase("user").update({"name": "Pat B"}).eq("email", "pw@example.com").select(),
          supabase("user").select("*").eq("email", "pw@example.com").csv(),
          supabase("user").select("email, password"),
          supabase("user").select("email").eq("password", "s3cret pass"))
def password_is_never_returned(inserted, selected, updated, as_csv, asked_for, filtered):
    for answer, status in ((inserted, 201), (selected, 200), (updated, 200)):
        [user] = rows(answer, status)
        assert set(user) == {"id", "email", "name"}, user
    assert rows(as_csv).splitlines()[0].split(",") == ["id", "email", "name"]
    assert "s3cret" not in as_csv.data
    for refused in (asked_for, filtered):
        assert refused.status in (400, 403) and refused.data is None
        assert "s3cret" not in json.dumps(refused.error)


# -- the harness: npm packages, one server and one node run per database -----------------

@pytest.fixture(scope="session")
def node_command() -> list[str]:
    """How to run run.mjs, its npm packages installed from the lock file when missing."""
    return nodejs.node_command("run.mjs")


@pytest.fixture(scope="module", params=DATABASES)
def answers(request, node_command, tmp_path_factory, prepared_servers) -> dict:
    """Every scenario's answers from one node run against one `tiddly serve` on this database."""
    url = clean_database(request.param, tmp_path_factory.mktemp("js-clients"), prepared_servers)
    keys = {"write": new_key(url, "app"), "read": new_key(url, "reader", "read"),
            "books_only": new_key(url, "books-only", "write", "books"),
            "items_only": new_key(url, "items-only", "write", "items"),
            "wrong": "tdk_" + "x" * 43}
    server = LiveServer(url, workers=1, threads=2)
    try:
        keys["token"] = _seed(server.url, keys["write"])
        scenarios = [{"name": name, "steps": steps} for name, (steps, _check) in SCENARIOS.items()]
        run = subprocess.run([*node_command, "--url", server.url, *[f"--key={k}={v}" for k, v in keys.items()]],
                             input=json.dumps(scenarios), capture_output=True, text=True, timeout=600, check=False)
    finally:
        server.stop()
    assert run.returncode == 0, f"run.mjs failed:\n{run.stderr}"
    return json.loads(run.stdout)


def _seed(base: str, key: str) -> str:
    """The books, stores and items every read scenario sees, through Tiddly's own API;
    and a user's login token."""
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {key}"

        def insert(table: str, rows: list) -> list[int]:
            response = http.post(f"{base}/{table}", json=rows)
            assert response.status_code == 201, response.text
            return response.json()["ids"]

        insert("books", BOOKS)
        store_ids = insert("stores", [{"name": name} for name in STORE_ITEMS])
        insert("items", [{"name": item, "price": price, "store_id": store_id}
                         for store_id, items in zip(store_ids, STORE_ITEMS.values()) for item, price in items])
        login = {"email": "login@example.com", "password": "correct horse battery staple"}
        insert("user", [login])
        return http.post(f"{base}/-/login", json=login).json()["token"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_client(answers, name):
    outcome = answers[name]
    if isinstance(outcome, dict):
        pytest.fail(f"the client threw:\n{outcome['crash']}\n{_exchanges(outcome['requests'])}")
    check = SCENARIOS[name][1]
    try:
        check(*[SimpleNamespace(**{k: v for k, v in answer.items() if k != "requests"}) for answer in outcome])
    except (AssertionError, TypeError, KeyError, ValueError) as failure:  # or data not shaped as asserted
        exchanges = "\n".join(_exchanges(answer["requests"]) for answer in outcome)
        what = failure if isinstance(failure, AssertionError) else f"{type(failure).__name__}: {failure}"
        raise AssertionError(f"{what}\n\nwhat the clients sent and Tiddly answered:\n{exchanges}") from None


def _exchanges(requests_sent: list) -> str:
    return "\n".join(f"  {r['method']} {r['url']} {_headers(r['headers'])}"
                     f"{' body ' + r['body'] if r['body'] not in (None, '{}', 'undefined') else ''}"
                     f"\n    -> {r['status']} {r['answer'][:300]}" for r in requests_sent)


def _headers(headers: dict) -> str:
    shown = {k: v for k, v in headers.items() if k.lower() not in ("apikey", "authorization", "x-client-info")}
    return json.dumps(shown) if shown else ""
