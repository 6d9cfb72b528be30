"""The PostgREST dialect at /rest/v1, driven by the real postgrest-py client over real HTTP,
on SQLite, PostgreSQL and MariaDB: the whole grammar of reads, writes, errors and auth.

Each test serves a fresh app on a real WSGI server in a thread (werkzeug's, threaded);
`test_postgrest_live.py` runs the same client against a real `tiddly serve`.
"""
from __future__ import annotations

import httpx
import pytest
from pgrst import Served, error_of, serving
from postgrest import CountMethod
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
)

from tiddly import schema
from tiddly.config import Config

BOOKS = [
    {"title": "Dune", "author": "Frank Herbert", "year": 1965, "isbn": "0441013597"},
    {"title": "Emma", "author": "Jane Austen", "year": 1815, "isbn": None},
    {"title": "Persuasion", "author": "Jane Austen", "year": 1817, "isbn": "014143968X"},
    {"title": "Solaris", "author": "Stanisław Lem", "year": None, "isbn": "0156027607"},
    {"title": "Ubik", "author": "Philip K. Dick", "year": 1969, "isbn": "0547572298"},
]


@pytest.fixture
def served(db_url):
    server = Served(Config(database_url=db_url))
    yield server
    server.stop()


@pytest.fixture
def rest(served):
    with served.client() as client:
        yield client


@pytest.fixture
def books(rest):
    rest.from_("books").insert(BOOKS).execute()
    return rest


@pytest.fixture
def shop(rest):
    rest.from_("stores").insert([{"name": "North"}, {"name": "South"}, {"name": "Empty"}]).execute()
    rest.from_("items").insert([
        {"name": "tea", "price": 3.5, "store_id": 1}, {"name": "jam", "price": 4.0, "store_id": 1},
        {"name": "rye", "price": 2.25, "store_id": 1}, {"name": "oat", "price": 1.5, "store_id": 2},
        {"name": "fig", "price": 6.0, "store_id": 2},
    ]).execute()
    return rest


def titles(response) -> list[str]:
    return [row["title"] for row in response.data]


# -- filters ---------------------------------------------------------------------------

def test_comparison_filters(books):
    table = lambda: books.from_("books").select("title").order("id")  # noqa: E731
    assert titles(table().eq("author", "Jane Austen").execute()) == ["Emma", "Persuasion"]
    assert titles(table().neq("author", "Jane Austen").execute()) == ["Dune", "Solaris", "Ubik"]
    assert titles(table().gt("year", 1900).execute()) == ["Dune", "Ubik"]
    assert titles(table().gte("year", 1965).execute()) == ["Dune", "Ubik"]
    assert titles(table().lt("year", 1817).execute()) == ["Emma"]
    assert titles(table().lte("year", 1817).execute()) == ["Emma", "Persuasion"]
    assert titles(table().gt("year", 1800).lt("year", 1966).execute()) == ["Dune", "Emma", "Persuasion"]


def test_like_ilike_in_and_is(books):
    table = lambda: books.from_("books").select("title").order("id")  # noqa: E731
    assert titles(table().like("title", "*o*").execute()) == ["Persuasion", "Solaris"]
    assert titles(table().like("title", "d*").execute()) == []  # like is case-sensitive
    assert titles(table().ilike("title", "d*").execute()) == ["Dune"]
    assert titles(table().in_("title", ["Ubik", "Emma", "nope"]).execute()) == ["Emma", "Ubik"]
    assert titles(table().in_("author", ["Frank Herbert", "Lem, Stanisław"]).execute()) == ["Dune"]
    assert titles(table().is_("year", None).execute()) == ["Solaris"]
    assert titles(table().is_("isbn", "null").execute()) == ["Emma"]
    assert titles(table().filter("year", "is", "not_null").lt("year", 1900).execute()) == ["Emma", "Persuasion"]
    assert titles(table().filter("year", "isdistinct", "1965").execute()) == ["Emma", "Persuasion", "Solaris", "Ubik"]
    assert titles(table().filter("year", "neq(all)", "{1965,1969}").execute()) == ["Emma", "Persuasion"]
    assert titles(table().like_any_of("title", "D*,U*").execute()) == ["Dune", "Ubik"]
    assert titles(table().ilike_all_of("title", "*s*,*a*").execute()) == ["Persuasion", "Solaris"]


def test_quoted_in_items_keep_their_commas(rest):
    rest.from_("books").insert([{"title": "a,b", "author": "x"}, {"title": "a", "author": "y"}]).execute()
    found = rest.from_("books").select("author").in_("title", ["a,b"]).execute()
    assert found.data == [{"author": "x"}]


def test_not_on_any_operator(books):
    table = lambda: books.from_("books").select("title").order("id")  # noqa: E731
    assert titles(table().not_.eq("author", "Jane Austen").execute()) == ["Dune", "Solaris", "Ubik"]
    assert titles(table().not_.is_("year", None).execute()) == ["Dune", "Emma", "Persuasion", "Ubik"]
    assert titles(table().not_.in_("title", ["Dune", "Emma"]).execute()) == ["Persuasion", "Solaris", "Ubik"]
    assert titles(table().not_.like("title", "*o*").execute()) == ["Dune", "Emma", "Ubik"]
    assert titles(table().not_.gt("year", 1900).execute()) == ["Emma", "Persuasion"]  # NULL is neither


def test_or_and_trees_nest(books):
    table = lambda: books.from_("books").select("title").order("id")  # noqa: E731
    assert titles(table().or_("year.lt.1816,title.eq.Ubik").execute()) == ["Emma", "Ubik"]
    nested = table().or_("year.is.null,and(author.eq.Jane Austen,title.not.eq.Emma)").execute()
    assert titles(nested) == ["Persuasion", "Solaris"]
    assert titles(table().or_("title.in.(Dune,Ubik),year.lt.1816").gt("id", 1).execute()) == ["Emma", "Ubik"]
    assert titles(table().not_.or_("year.is.null,year.lt.1900").execute()) == ["Dune", "Ubik"]
    quoted = table().or_('author.eq."Lem, Stanisław",title.eq.Dune').execute()
    assert titles(quoted) == ["Dune"]  # the author is "Stanisław Lem": a quoted value holds its comma
    anded = books.from_("books").select("title").order("id")
    anded.request.params = anded.request.params.add("and", "(year.gte.1817,year.lte.1965)")
    assert titles(anded.execute()) == ["Dune", "Persuasion"]


# -- select, order, paging, counting -------------------------------------------------------

def test_select_columns_and_aliases(books):
    found = books.from_("books").select("name:title,year").eq("title", "Dune").execute()
    assert found.data == [{"name": "Dune", "year": 1965}]
    everything = books.from_("books").select("*").eq("title", "Emma").execute()
    assert set(everything.data[0]) == {"id", "title", "author", "year", "isbn"}


def test_order_with_directions_and_nulls(books):
    table = lambda: books.from_("books").select("title")  # noqa: E731
    assert titles(table().order("year", desc=True, nullsfirst=False).execute()) == \
        ["Ubik", "Dune", "Persuasion", "Emma", "Solaris"]
    assert titles(table().order("year", nullsfirst=True).execute()) == \
        ["Solaris", "Emma", "Persuasion", "Dune", "Ubik"]
    assert titles(table().order("author", desc=True).order("title", desc=True).execute()) == \
        ["Solaris", "Ubik", "Persuasion", "Emma", "Dune"]


def test_limit_offset_range_and_exact_count(books):
    page = books.from_("books").select("title", count=CountMethod.exact).order("id").range(1, 2).execute()
    assert titles(page) == ["Emma", "Persuasion"] and page.count == 5
    first = books.from_("books").select("title").order("id").limit(2).execute()
    assert titles(first) == ["Dune", "Emma"] and first.count is None
    skipped = books.from_("books").select("title").order("id").limit(1).offset(4).execute()
    assert titles(skipped) == ["Ubik"]
    estimated = books.from_("books").select("id", count=CountMethod.estimated).eq("author", "Jane Austen").execute()
    assert estimated.count == 2  # exact while the estimate is within the page
    planned = books.from_("books").select("id", count=CountMethod.planned).eq("author", "Jane Austen").execute()
    assert isinstance(planned.count, int)  # PostgreSQL's planner's estimate; exact on SQLite and MariaDB
    head = books.from_("books").select("*", count=CountMethod.exact, head=True).gt("year", 1900).execute()
    assert head.count == 2


def test_content_range_206_and_416(served, books):
    url = served.url + "/rest/v1/books"
    partial = httpx.get(url, params={"select": "id", "order": "id", "limit": "2"}, headers={"Prefer": "count=exact"})
    assert partial.status_code == 206 and partial.headers["Content-Range"] == "0-1/5"
    whole = httpx.get(url, params={"select": "id"}, headers={"Prefer": "count=exact"})
    assert whole.status_code == 200 and whole.headers["Content-Range"] == "0-4/5"
    uncounted = httpx.get(url, params={"select": "id", "limit": "2"})
    assert uncounted.status_code == 200 and uncounted.headers["Content-Range"] == "0-1/*"
    ranged = httpx.get(url, params={"select": "id", "order": "id"},
                       headers={"Range-Unit": "items", "Range": "3-", "Prefer": "count=exact"})
    assert ranged.json() == [{"id": 4}, {"id": 5}] and ranged.headers["Content-Range"] == "3-4/5"
    assert ranged.status_code == 206
    beyond = httpx.get(url, params={"offset": "9"}, headers={"Prefer": "count=exact"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == "*/5"
    assert beyond.json()["code"] == "PGRST103"
    inverted = httpx.get(url, headers={"Range": "4-2"})
    assert inverted.status_code == 416 and inverted.json()["code"] == "PGRST103"
    empty = httpx.get(url, params={"title": "eq.nope"}, headers={"Prefer": "count=exact"})
    assert empty.status_code == 200 and empty.headers["Content-Range"] == "*/0" and empty.json() == []


def test_single_maybe_single_and_csv(books):
    one = books.from_("books").select("title,year").eq("title", "Dune").single().execute()
    assert one.data == {"title": "Dune", "year": 1965}
    none = error_of(lambda: books.from_("books").select("*").eq("title", "nope").single().execute())
    assert none.code == "PGRST116" and "0 rows" in none.details
    many = error_of(lambda: books.from_("books").select("*").eq("author", "Jane Austen").single().execute())
    assert many.code == "PGRST116" and many.details == "The result contains 2 rows"
    assert books.from_("books").select("*").eq("title", "nope").maybe_single().execute() is None
    assert books.from_("books").select("title").eq("title", "Ubik").maybe_single().execute().data == {"title": "Ubik"}
    text = books.from_("books").select("title,year").lt("year", 1900).order("id").csv().execute().data
    assert text.splitlines() == ["title,year", "Emma,1815", "Persuasion,1817"]


def test_nulls_stripped(books):
    found = books.from_("books").select("title,year,isbn").in_("title", ["Emma", "Solaris"]).order("id") \
        .strip_nulls().execute()
    assert found.data == [{"title": "Emma", "year": 1815}, {"title": "Solaris", "isbn": "0156027607"}]


# -- embedding ---------------------------------------------------------------------------

def test_embedding_both_ways_and_nested(shop):
    stores = shop.from_("stores").select("name,items(name)").order("id").order("id", foreign_table="items").execute()
    assert stores.data == [{"name": "North", "items": [{"name": "tea"}, {"name": "jam"}, {"name": "rye"}]},
                           {"name": "South", "items": [{"name": "oat"}, {"name": "fig"}]},
                           {"name": "Empty", "items": []}]
    items = shop.from_("items").select("name,stores(name)").eq("name", "fig").execute()
    assert items.data == [{"name": "fig", "stores": {"name": "South"}}]
    nested = shop.from_("items").select("name,shop:stores(name,items(name))").eq("name", "oat") \
        .order("id", foreign_table="shop.items").execute()
    assert nested.data == [{"name": "oat", "shop": {"name": "South", "items": [{"name": "oat"}, {"name": "fig"}]}}]
    spread = shop.from_("items").select("name,...stores(store:name)").in_("name", ["tea", "oat"]).order("id").execute()
    assert spread.data == [{"name": "tea", "store": "North"}, {"name": "oat", "store": "South"}]
    star = shop.from_("stores").select("*,items(*)").eq("name", "South").execute()
    assert set(star.data[0]) == {"id", "name", "items"} and set(star.data[0]["items"][0]) == \
        {"id", "name", "price", "store_id"}


def test_embedded_filters_order_limit_and_inner(shop):
    cheap = shop.from_("stores").select("name,items(name,price)").lt("items.price", 3.6) \
        .order("price", desc=True, foreign_table="items").limit(1, foreign_table="items").order("id").execute()
    assert cheap.data == [{"name": "North", "items": [{"name": "tea", "price": 3.5}]},
                          {"name": "South", "items": [{"name": "oat", "price": 1.5}]},
                          {"name": "Empty", "items": []}]
    inner = shop.from_("stores").select("name,items!inner(name)").gt("items.price", 5).execute()
    assert inner.data == [{"name": "South", "items": [{"name": "fig"}]}]
    counted = shop.from_("stores").select("name,items!inner(name)", count=CountMethod.exact) \
        .gt("items.price", 3).order("id").execute()
    assert [s["name"] for s in counted.data] == ["North", "South"] and counted.count == 2
    ranged = shop.from_("stores").select("name,items(name)").order("id", foreign_table="items") \
        .range(1, 1, foreign_table="items").eq("name", "North").execute()
    assert ranged.data == [{"name": "North", "items": [{"name": "jam"}]}]
    either = shop.from_("stores").select("name,items(name)").or_("name.eq.tea,name.eq.fig", reference_table="items") \
        .order("id").limit(2).execute()
    assert either.data == [{"name": "North", "items": [{"name": "tea"}]}, {"name": "South", "items": [{"name": "fig"}]}]


def test_filtering_parents_by_their_related_rows(shop):
    without = shop.from_("stores").select("name,items(id)").is_("items", "null").execute()
    assert without.data == [{"name": "Empty", "items": []}]
    having = shop.from_("stores").select("name,items()").not_.is_("items", "null").order("id").execute()
    assert having.data == [{"name": "North"}, {"name": "South"}]
    to_one = shop.from_("items").select("name,stores!inner(name)").eq("stores.name", "South").order("id").execute()
    assert [i["name"] for i in to_one.data] == ["oat", "fig"]


def test_a_reflected_database_embeds_along_its_foreign_keys(db_url, shop):
    engine = create_engine(db_url)
    reflected = schema.reflected(engine, ["stores", "items"])
    engine.dispose()
    server = Served(Config(database_url=db_url), reflected.metadata, reflected.registry)
    try:
        with server.client() as rest:
            found = rest.from_("stores").select("name,items!inner(name,stores(name))").eq("items.name", "fig") \
                .execute()
            assert found.data == [{"name": "South", "items": [{"name": "fig", "stores": {"name": "South"}}]}]
    finally:
        server.stop()


def test_two_foreign_keys_to_one_table_are_told_apart_by_hints(db_url):
    metadata = MetaData()
    people = Table("pgrst_people", metadata, Column("id", Integer, primary_key=True), Column("name", String(20)))
    Table("pgrst_notes", metadata, Column("id", Integer, primary_key=True), Column("body", String(20)),
          Column("sender_id", ForeignKey(people.c.id)), Column("receiver_id", ForeignKey(people.c.id)))
    with serving(db_url, metadata) as server, server.client() as rest:
        rest.from_("pgrst_people").insert([{"name": "Ann"}, {"name": "Bob"}]).execute()
        rest.from_("pgrst_notes").insert({"body": "hi", "sender_id": 1, "receiver_id": 2}).execute()
        note = rest.from_("pgrst_notes").select(
            "body,from:pgrst_people!sender_id(name),to:pgrst_people!receiver_id(name)").single().execute()
        assert note.data == {"body": "hi", "from": {"name": "Ann"}, "to": {"name": "Bob"}}
        sent = rest.from_("pgrst_people").select("name,pgrst_notes!sender_id(body)").order("id").execute()
        assert sent.data == [{"name": "Ann", "pgrst_notes": [{"body": "hi"}]}, {"name": "Bob", "pgrst_notes": []}]
        ambiguous = error_of(lambda: rest.from_("pgrst_notes").select("body,pgrst_people(name)").execute())
        assert ambiguous.code == "PGRST201" and "'pgrst_people!pgrst_notes_sender_id_fkey'" in ambiguous.hint
        assert {"cardinality": "many-to-one", "embedding": "pgrst_notes with pgrst_people",
                "relationship": "pgrst_notes_sender_id_fkey using pgrst_notes(sender_id) and pgrst_people(id)"} \
            in ambiguous.details


# -- writes --------------------------------------------------------------------------------

def test_insert_object_and_array_with_representation(rest):
    one = rest.from_("books").insert({"title": "Kindred", "author": "Octavia Butler"}).execute()
    assert one.data == [{"id": 1, "title": "Kindred", "author": "Octavia Butler", "year": None, "isbn": None}]
    many = rest.from_("books").insert([{"title": "A", "author": "x", "year": 1}, {"title": "B", "author": "y"}]) \
        .execute()
    assert [(b["id"], b["title"], b["year"]) for b in many.data] == [(2, "A", 1), (3, "B", None)]
    minimal = rest.from_("books").insert({"title": "C", "author": "z"}, returning="minimal").execute()
    assert minimal.data == []
    chosen = rest.from_("stores").insert({"name": "West"}).select("name")  # postgrest-js's insert().select()
    assert chosen.execute().data == [{"name": "West"}]


def test_a_bulk_insert_is_all_or_nothing(rest):
    failed = error_of(lambda: rest.from_("books").insert([
        {"title": "ok", "author": "a", "isbn": "1"}, {"title": "dup", "author": "b", "isbn": "1"}]).execute())
    assert failed.code == "23505"
    missing = error_of(lambda: rest.from_("books").insert([{"title": "ok", "author": "a"}, {"title": "no author"}])
                       .execute())
    assert missing.code == "23502"  # columns= names author, so the second row sends it as null
    assert rest.from_("books").select("id", count=CountMethod.exact).execute().count == 0


def test_missing_default_and_columns(served, rest):
    rest.from_("books").insert([{"title": "A", "author": "x", "year": 2000}, {"title": "B", "author": "y"}],
                               default_to_null=False).execute()
    assert [b["year"] for b in rest.from_("books").select("year").order("id").execute().data] == [2000, None]
    url = served.url + "/rest/v1/books?columns=title,author"
    response = httpx.post(url, json=[{"title": "C", "author": "z", "year": 5}],
                          headers={"Prefer": "return=representation"})
    assert response.status_code == 201 and response.json()[0]["year"] is None  # year is not in columns
    unknown = httpx.post(served.url + "/rest/v1/books?columns=title,nope", json=[{"title": "D"}])
    assert unknown.status_code == 400 and unknown.json()["code"] == "PGRST204"


def test_a_csv_body_is_rows_all_or_nothing(served, rest):
    """POST with Content-Type: text/csv, as PostgREST reads it: NULL is null, an empty field the
    empty string; one bad line and nothing is written; columns= and upserts apply as to JSON."""
    def post(path: str, body: str, prefer: str = "return=representation") -> httpx.Response:
        return httpx.post(f"{served.url}/rest/v1/{path}", content=body.encode(),
                          headers={"Content-Type": "text/csv", "Prefer": prefer})

    created = post("books?select=title,author,year,isbn",
                   'title,author,year,isbn\nDune,Frank Herbert,1965,NULL\n"Tales, ""Old""",,NULL,\n')
    assert created.status_code == 201
    assert created.json() == [{"title": "Dune", "author": "Frank Herbert", "year": 1965, "isbn": None},
                              {"title": 'Tales, "Old"', "author": "", "year": None, "isbn": ""}]
    for body, code in (("title,author\nA,B\nC\n", "22P02"), ("title,author,year\nA,B,soon\n", "22P02"),
                       ("title,nope\nA,B\n", "PGRST204"), ("id,title,author\n7,A,B\n", "42501")):
        refused = post("books", body)
        assert refused.status_code in (400, 403) and refused.json()["code"] == code, refused.text
    only = post("books?columns=title,author&select=title,year", "title,author,year\nEmma,Jane Austen,1815\n")
    assert only.json() == [{"title": "Emma", "year": None}]
    merged = post("books?on_conflict=isbn&select=title,isbn", "isbn,title,author\n,Ubik,Philip K. Dick\n",
                  "resolution=merge-duplicates, return=representation")
    assert merged.json() == [{"title": "Ubik", "isbn": ""}]  # the empty isbn of "Tales" was the key
    assert sorted(titles(rest.from_("books").select("title").execute())) == ["Dune", "Emma", "Ubik"]


def test_upsert_merge_and_ignore_duplicates(rest):
    rest.from_("user").insert({"email": "ann@example.com", "name": "Ann"}).execute()
    merged = rest.from_("user").upsert([{"email": "ann@example.com", "name": "Ann B."},
                                        {"email": "bob@example.com", "name": "Bob"}], on_conflict="email").execute()
    assert [(u["email"], u["name"]) for u in merged.data] == [("ann@example.com", "Ann B."), ("bob@example.com", "Bob")]
    ignored = rest.from_("user").upsert([{"email": "ann@example.com", "name": "ignored"},
                                         {"email": "cy@example.com", "name": "Cy"}], on_conflict="email",
                                        ignore_duplicates=True).execute()
    assert [(u["email"], u["name"]) for u in ignored.data] == [("cy@example.com", "Cy")]  # only what it inserted
    stored = rest.from_("user").select("email,name").order("id").execute().data
    assert stored == [{"email": "ann@example.com", "name": "Ann B."}, {"email": "bob@example.com", "name": "Bob"},
                      {"email": "cy@example.com", "name": "Cy"}]
    bob = rest.from_("user").select("id").eq("email", "bob@example.com").single().execute().data["id"]
    by_key = rest.from_("user").upsert({"id": bob, "email": "bob@example.com", "name": "Robert"}).execute()
    assert by_key.data == [{"id": bob, "email": "bob@example.com", "name": "Robert"}]


def test_update_and_delete_with_filters(shop):
    updated = shop.from_("items").update({"price": 9}).eq("store_id", 2).execute()
    assert sorted((i["name"], i["price"]) for i in updated.data) == [("fig", 9.0), ("oat", 9.0)]
    assert shop.from_("items").update({"price": 1}, returning="minimal").eq("name", "nope").execute().data == []
    deleted = shop.from_("items").delete().gt("price", 8).execute()
    assert sorted(i["name"] for i in deleted.data) == ["fig", "oat"]
    assert shop.from_("items").select("id", count=CountMethod.exact).execute().count == 3
    gone = shop.from_("stores").delete(returning="minimal").eq("name", "North").execute()
    assert gone.data == []
    assert shop.from_("items").select("id", count=CountMethod.exact).execute().count == 0  # ON DELETE CASCADE


def test_update_returns_the_rows_it_changed_even_when_they_no_longer_match(shop):
    moved = shop.from_("items").update({"store_id": 3}).eq("store_id", 2).select("name,stores(name)").execute()
    assert sorted((i["name"], i["stores"]["name"]) for i in moved.data) == [("fig", "Empty"), ("oat", "Empty")]


def test_unfiltered_update_and_delete_are_refused(shop):
    for call in (lambda: shop.from_("items").update({"price": 0}).execute(),
                 lambda: shop.from_("items").delete().execute()):
        refused = error_of(call)
        assert refused.code == "21000" and "requires a WHERE clause" in refused.message
    assert shop.from_("items").select("id", count=CountMethod.exact).gt("price", 0).execute().count == 5


def test_max_affected_and_single_roll_the_write_back(shop):
    too_many = error_of(lambda: shop.from_("items").update({"price": 0}).eq("store_id", 1).max_affected(2).execute())
    assert too_many.code == "PGRST124"
    two = error_of(lambda: shop.from_("items").delete().eq("store_id", 2).single().execute())
    assert two.code == "PGRST116"
    assert shop.from_("items").select("id", count=CountMethod.exact).gt("price", 0).execute().count == 5
    one = shop.from_("items").update({"price": 7}).eq("name", "tea").single().execute()
    assert one.data["price"] == 7.0


def test_prefer_values_in_one_header_and_preference_applied(served, shop):
    response = httpx.post(served.url + "/rest/v1/stores", json={"name": "X"},
                          headers={"Prefer": "return=representation, count=exact, timezone=UTC"})
    assert response.status_code == 201 and response.json()[0]["name"] == "X"
    assert response.headers["Preference-Applied"] == "return=representation, count=exact"
    located = httpx.post(served.url + "/rest/v1/stores", json={"name": "Y"}, headers={"Prefer": "return=headers-only"})
    assert located.status_code == 201 and located.headers["Location"] == "/stores?id=eq.5" and located.content == b""
    strict = httpx.get(served.url + "/rest/v1/stores", headers={"Prefer": "handling=strict, timezone=UTC"})
    assert strict.status_code == 400 and strict.json()["code"] == "PGRST122"


def test_put_creates_or_replaces_one_row_by_key(served, rest):
    url = served.url + "/rest/v1/stores"
    created = httpx.put(url, params={"id": "eq.7"}, json={"id": 7, "name": "Seven"},
                        headers={"Prefer": "return=representation"})
    assert created.status_code == 201 and created.json() == [{"id": 7, "name": "Seven"}]
    changed = httpx.put(url, params={"id": "eq.7"}, json={"id": 7, "name": "Sieben"})
    assert changed.status_code == 204
    assert rest.from_("stores").select("name").eq("id", 7).single().execute().data == {"name": "Sieben"}
    mismatch = httpx.put(url, params={"id": "eq.7"}, json={"id": 8, "name": "x"})
    assert mismatch.status_code == 400 and mismatch.json()["code"] == "PGRST115"
    not_by_key = httpx.put(url, params={"name": "eq.x"}, json={"name": "x"})
    assert not_by_key.status_code == 405 and not_by_key.json()["code"] == "PGRST105"


# -- errors ------------------------------------------------------------------------------

def test_constraint_errors_carry_postgresql_codes(shop):
    shop.from_("user").insert({"email": "a@example.com"}).execute()
    unique = error_of(lambda: shop.from_("user").insert({"email": "a@example.com"}).execute())
    assert unique.code == "23505"
    orphan = error_of(lambda: shop.from_("items").insert({"name": "x", "price": 1, "store_id": 99}).execute())
    assert orphan.code == "23503"
    bad = error_of(lambda: shop.from_("items").select("*").eq("price", "cheap").execute())
    assert bad.code == "22P02"


def test_error_bodies_and_statuses(served, shop):
    cases = [
        ("GET", "/rest/v1/nope", 404, "PGRST205"),
        ("GET", "/rest/v1/items?nope=eq.1", 400, "42703"),
        ("GET", "/rest/v1/items?select=nope", 400, "42703"),
        ("GET", "/rest/v1/items?price=xx.1", 400, "PGRST100"),
        ("GET", "/rest/v1/items?or=(price.eq.1", 400, "PGRST100"),
        ("GET", "/rest/v1/items?price=sl.[1,2)", 400, "42883"),
        ("GET", "/rest/v1/items?select=name.sum()", 400, "42883"),
        ("GET", "/rest/v1/items?select=*,nope(*)", 400, "PGRST200"),
        ("GET", "/rest/v1/items?nope.name=eq.x", 400, "PGRST108"),
        ("GET", "/rest/v1/rpc/anything", 404, "PGRST202"),
        ("GET", "/rest/v1/items/1", 404, "PGRST125"),
        ("POST", "/rest/v1/patients", 405, "PGRST117"),
    ]
    for method, path, status, code in cases:
        response = httpx.request(method, served.url + path, json={} if method == "POST" else None)
        assert (response.status_code, response.json()["code"]) == (status, code), (path, response.text)
        assert set(response.json()) == {"code", "message", "details", "hint"}
        assert response.headers["Proxy-Status"] == f"PostgREST; error={code}"
    unknown_key = error_of(lambda: shop.from_("items").insert({"name": "x", "price": 1, "store_id": 1, "nope": 1})
                           .execute())
    assert unknown_key.code == "PGRST204"
    generated = shop.from_("items").insert({"id": 50, "name": "x", "price": 1, "store_id": 1}).execute()
    assert generated.data[0]["id"] == 50  # a generated key may be named, as PostgREST writes it
    other_schema = httpx.get(served.url + "/rest/v1/items", headers={"Accept-Profile": "private"})
    assert other_schema.status_code == 406 and other_schema.json()["code"] == "PGRST106"
    assert httpx.get(served.url + "/rest/v1/items", headers={"Accept-Profile": "public"}).status_code == 200
    unacceptable = httpx.get(served.url + "/rest/v1/items", headers={"Accept": "application/xml"})
    assert unacceptable.status_code == 406 and unacceptable.json()["code"] == "PGRST107"
    not_json = httpx.post(served.url + "/rest/v1/items", content=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["code"] == "PGRST102"


# -- auth and column policy ------------------------------------------------------------------

def test_keys_as_apikey_or_bearer(served, shop):
    reader, writer = served.key("reader", "read"), served.key("writer", "write")
    anonymous = error_of(lambda: shop.from_("items").select("*").execute())
    assert anonymous.code == "PGRST302"
    with served.client(apikey=reader) as by_apikey:
        assert len(by_apikey.from_("items").select("*").execute().data) == 5
        refused = error_of(lambda: by_apikey.from_("items").insert({"name": "x", "price": 1, "store_id": 1}).execute())
        assert refused.code == "42501"
    with served.client(Authorization=f"Bearer {writer}", apikey="ignored: Authorization comes first") as bearer:
        assert bearer.from_("stores").insert({"name": "W"}).execute().data[0]["name"] == "W"
    with served.client(apikey="tdk_wrong") as wrong:
        assert error_of(lambda: wrong.from_("items").select("*").execute()).code == "PGRST301"
    response = httpx.get(served.url + "/rest/v1/items", headers={"apikey": "tdk_wrong"})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"


@pytest.fixture
def vault(db_url):
    """Notes with a hidden column, their authors, and a vault of pins per note; served."""
    metadata = MetaData()
    authors = Table("pgrst_authors", metadata, Column("id", Integer, primary_key=True), Column("name", String(20)))
    notes = Table("pgrst_notes", metadata, Column("id", Integer, primary_key=True), Column("body", String(20)),
                  Column("secret", String(20), info={"policy": "hidden"}),
                  Column("author_id", ForeignKey(authors.c.id)))
    Table("pgrst_vault", metadata, Column("id", Integer, primary_key=True), Column("pin", String(20)),
          Column("note_id", ForeignKey(notes.c.id)))
    with serving(db_url, metadata) as server:
        with server.client() as rest:
            rest.from_("pgrst_authors").insert({"name": "Ann"}).execute()
            rest.from_("pgrst_notes").insert({"body": "hi", "author_id": 1}).execute()
        yield server


# Requests naming {} (a table, or a column of pgrst_notes), by method, path and JSON body.
NAMING = [("GET", "/{}", None), ("GET", "/pgrst_notes?select=body,{}(*)", None),
          ("GET", "/pgrst_notes?select=body,{}!inner(id)&order={}(id)", None), ("GET", "/pgrst_notes?select={}", None),
          ("GET", "/pgrst_notes?{}=eq.1", None), ("GET", "/pgrst_notes?or=({}.eq.1,body.eq.x)", None),
          ("GET", "/pgrst_notes?order={}.desc", None), ("POST", "/pgrst_notes", {"body": "x", "{}": "1"}),
          ("POST", "/pgrst_notes?columns=body,{}", {"body": "x"}), ("PATCH", "/pgrst_notes?id=eq.1", {"{}": "1"})]


def test_a_table_limited_key_learns_nothing_of_other_tables_or_hidden_columns(vault):
    """To a key limited to pgrst_notes, another table and a hidden column answer exactly as ones
    that do not exist, through every door of the dialect: the root, embeds, filters, order, writes."""
    key = vault.key("notes only", "write", ["pgrst_notes"])
    with httpx.Client(base_url=vault.url + "/rest/v1", headers={"apikey": key}) as http:
        def answer(method: str, path: str, body: dict | None, name: str) -> tuple[int, str]:
            body = {k.replace("{}", name): v for k, v in body.items()} if body else None
            response = http.request(method, path.replace("{}", name), json=body)
            return response.status_code, response.text.replace(name, "<name>")

        assert http.get("/pgrst_notes?select=body,author_id").json() == [{"body": "hi", "author_id": 1}]
        root = http.get("/").text
        assert not any(unseen in root for unseen in ("pgrst_authors", "pgrst_vault", "secret", "pin"))
        for unseen, absent in [("pgrst_authors", "pgrst_nothing"), ("pgrst_vault", "pgrst_nothing"),
                               ("secret", "nothing")]:
            for method, path, body in NAMING:
                status, text = answer(method, path, body, unseen)
                assert status >= 400 and (status, text) == answer(method, path, body, absent), (method, path, text)
        assert http.get("/pgrst_notes?select=body").json() == [{"body": "hi"}]  # no write went through


def test_login_tokens_work_like_keys(served, rest):
    served.key("admin", "admin")
    with served.client(apikey=served.key("w", "write")) as writer:
        writer.from_("user").insert({"email": "ann@example.com", "password": "s3cret-pass"}).execute()
    token = httpx.post(served.url + "/-/login", json={"email": "ann@example.com", "password": "s3cret-pass"}).json()
    with served.client(Authorization=f"Bearer {token['token']}") as client:
        assert client.from_("user").select("email").execute().data == [{"email": "ann@example.com"}]


def test_write_only_and_hidden_columns_hold(rest):
    created = rest.from_("user").insert({"email": "ann@example.com", "password": "s3cret-pass"}).execute()
    assert "password" not in created.data[0]
    assert "password" not in rest.from_("user").select("*").execute().data[0]
    for call in (lambda: rest.from_("user").select("password").execute(),
                 lambda: rest.from_("user").select("id").eq("password", "s3cret-pass").execute(),
                 lambda: rest.from_("user").select("id").or_("password.like.s*").execute(),
                 lambda: rest.from_("user").select("id").order("password").execute()):
        assert error_of(call).code == "42703"


def test_cors_lets_browsers_send_and_read_the_dialects_headers(db_url):
    server = Served(Config(database_url=db_url, cors_origins="https://app.example"))
    try:
        preflight = httpx.options(server.url + "/rest/v1/items", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "apikey, prefer, range, content-profile, x-client-info"})
        allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"apikey", "prefer", "range", "range-unit", "accept-profile", "content-profile", "x-client-info",
                "x-supabase-api-version", "authorization", "content-type"} <= allowed
        answer = httpx.get(server.url + "/rest/v1/items", headers={"Origin": "https://app.example"})
        exposed = {h.strip().lower() for h in answer.headers["Access-Control-Expose-Headers"].split(",")}
        assert {"content-range", "preference-applied", "location"} <= exposed
        own = httpx.get(server.url + "/items", headers={"Origin": "https://app.example"})
        assert "content-range" not in own.headers["Access-Control-Expose-Headers"].lower()
    finally:
        server.stop()


def test_the_root_answers_a_valid_swagger_document(served):
    from openapi_spec_validator import validate
    response = httpx.get(served.url + "/rest/v1/")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/openapi+json")
    document = response.json()
    validate(document)
    assert document["swagger"] == "2.0" and document["basePath"] == "/rest/v1"
    assert set(document["definitions"]["user"]["properties"]) == {"id", "email", "password", "name"}
    assert "password" not in {p["name"] for k, p in document["parameters"].items() if k.startswith("rowFilter.user.")}
    assert "post" not in document["paths"]["/patients"] and "post" in document["paths"]["/items"]
    assert "text/csv" in document["paths"]["/items"]["post"]["consumes"]
    assert {"order", "limit"} <= {p["$ref"].rsplit("/", 1)[1] for p in document["paths"]["/items"]["delete"]
                                  ["parameters"]}
    assert httpx.get(served.url + "/rest/v1").json()["swagger"] == "2.0"
