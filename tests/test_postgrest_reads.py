"""Reads through the PostgREST dialect as PostgREST answers them, on SQLite, PostgreSQL and
MariaDB, over real HTTP: the rows' order, embeds resolved by PostgREST's rules (a foreign key's
name or column, a table that refers to itself, one-to-one, many-to-many), aggregates, casts and
JSON paths in ``select``. The tables are made in each database's own SQL and reflected, as
``tiddly serve --reflect`` serves them.
"""
from __future__ import annotations

from contextlib import contextmanager

import httpx
import pytest
from pgrst import reflected, serving
from sqlalchemy import Column, Integer, MetaData, String, Table, event
from sqlalchemy.engine import Engine

AUTO_PK = {"sqlite": "INTEGER PRIMARY KEY", "postgresql": "SERIAL PRIMARY KEY",
           "mysql": "INT AUTO_INCREMENT PRIMARY KEY"}
JSON_TYPE = {"sqlite": "JSON", "postgresql": "JSONB", "mysql": "JSON"}
TABLES = ["pt_tree_tags", "pt_tags", "pt_details", "pt_tree", "pt_friends", "pt_people"]


def dialect_of(db_url: str) -> str:
    return db_url.split(":", 1)[0].split("+", 1)[0]


def ddl(dialect: str) -> list[str]:
    key, text_type = AUTO_PK[dialect], "VARCHAR(40)"
    return [
        f"CREATE TABLE pt_people (name {text_type} PRIMARY KEY, age INTEGER, data {JSON_TYPE[dialect]})",
        # two foreign keys to one table, named; a third left unnamed
        f"CREATE TABLE pt_friends (id {key}, first {text_type} NOT NULL, second {text_type} NOT NULL, "
        f"third {text_type} NULL REFERENCES pt_people (name), "
        "CONSTRAINT pt_friends_first_fkey FOREIGN KEY (first) REFERENCES pt_people (name), "
        "CONSTRAINT pt_friends_second_fkey FOREIGN KEY (second) REFERENCES pt_people (name))",
        # a table that refers to itself
        f"CREATE TABLE pt_tree (id {key}, label {text_type}, parent_id INTEGER NULL, "
        "CONSTRAINT pt_tree_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES pt_tree (id))",
        # one-to-one: its key is its foreign key
        "CREATE TABLE pt_details (id INTEGER PRIMARY KEY, note VARCHAR(40), "
        "CONSTRAINT pt_details_id_fkey FOREIGN KEY (id) REFERENCES pt_tree (id))",
        # many-to-many through a table whose key holds both foreign keys
        f"CREATE TABLE pt_tags (id {key}, name {text_type})",
        "CREATE TABLE pt_tree_tags (tree_id INTEGER NOT NULL, tag_id INTEGER NOT NULL, PRIMARY KEY (tree_id, tag_id), "
        "CONSTRAINT pt_tree_tags_tree_id_fkey FOREIGN KEY (tree_id) REFERENCES pt_tree (id), "
        "CONSTRAINT pt_tree_tags_tag_id_fkey FOREIGN KEY (tag_id) REFERENCES pt_tags (id))",
        "INSERT INTO pt_people (name, age, data) VALUES ('sam', 30, '{\"a\": {\"b\": \"x\", \"n\": 2}}'), "
        "('ann', 20, '{\"a\": {\"b\": \"y\", \"n\": 10}}'), ('bo', 20, NULL)",
        "INSERT INTO pt_friends (first, second, third) VALUES ('sam', 'ann', 'bo'), ('sam', 'bo', NULL)",
        "INSERT INTO pt_tree (label, parent_id) VALUES ('root', NULL), ('a', 1), ('b', 1), ('a1', 2)",
        "INSERT INTO pt_details (id, note) VALUES (1, 'the root'), (2, 'first child')",
        "INSERT INTO pt_tags (name) VALUES ('red'), ('blue'), ('green')",
        "INSERT INTO pt_tree_tags (tree_id, tag_id) VALUES (1, 1), (1, 2), (2, 2)",
    ]


@pytest.fixture
def api(db_url):
    with reflected(db_url, ddl(dialect_of(db_url)), TABLES) as server:
        with httpx.Client(base_url=server.url + "/rest/v1") as client:
            yield client


def get(client: httpx.Client, path: str, status: int = 200):
    response = client.get(path)
    assert response.status_code == status, response.text
    return response.json()


@contextmanager
def statements():
    """The SELECT statements sent to any database while the block runs."""
    sent: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append(" ".join(statement.split()))
    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(Engine, "before_cursor_execute", record)


# -- the rows' order ----------------------------------------------------------------------------

def test_rows_are_ordered_by_what_order_names_and_nothing_else(api, db_url):
    """PostgREST adds no ORDER BY of its own: none without ``order`` (on SQLite, the rowid: the
    order the rows were inserted in, where SQLite would read a covering index in its order), and
    no primary key after the columns ``order`` names (Tiddly's own API keeps its key tiebreaker)."""
    dialect = dialect_of(db_url)
    with statements() as sent:
        names = [row["name"] for row in get(api, "/pt_people?select=name")]
    # as each database keeps them: inserted (PostgreSQL's heap, SQLite's rowid), by key (MariaDB's InnoDB)
    assert names == (["ann", "bo", "sam"] if dialect == "mysql" else ["sam", "ann", "bo"])
    ordered = [s.upper().split("ORDER BY")[1].split(" LIMIT")[0].strip().split(".", 1)[-1]
               for s in sent if "ORDER BY" in s.upper() and "PT_PEOPLE" in s.upper()]  # less the schema
    assert ordered == {"sqlite": ["PT_PEOPLE.ROWID"], "mysql": ["PT_PEOPLE.NAME"], "postgresql": []}[dialect], sent
    with statements() as sent:
        rows = get(api, "/pt_people?select=name,age&order=age.desc")
    assert rows[0] == {"name": "sam", "age": 30} and {r["name"] for r in rows[1:]} == {"ann", "bo"}
    (ordered,) = [s for s in sent if "ORDER BY" in s.upper()]
    assert ordered.upper().split("ORDER BY")[1].count("PT_PEOPLE.NAME") == 0, ordered


def test_a_filter_key_is_read_up_to_a_bracket(api):
    """react-admin's PostgREST provider sends a search of two words as ``name[0]=...&name[1]=...``."""
    assert get(api, "/pt_people?select=name&name[0]=ilike.*a*&name[1]=ilike.*n*") == [{"name": "ann"}]
    assert get(api, "/pt_people?select=name&name[]=eq.bo") == [{"name": "bo"}]


# -- embeds -------------------------------------------------------------------------------------

def test_an_embed_is_named_by_its_table_its_foreign_key_or_its_column(api):
    friends = ("/pt_people?select=name,first_of:pt_friends!pt_friends_first_fkey(id),"
               "second_of:pt_friends_second_fkey(id)")
    rows = {row["name"]: row for row in get(api, friends + "&name=in.(sam,bo)")}
    assert rows["sam"] == {"name": "sam", "first_of": [{"id": 1}, {"id": 2}], "second_of": []}
    assert rows["bo"] == {"name": "bo", "first_of": [], "second_of": [{"id": 2}]}
    # the foreign key's column names the table it refers to (a to-one embed)
    assert get(api, "/pt_friends?select=id,first(name),s:second(age)&id=eq.1") == \
        [{"id": 1, "first": {"name": "sam"}, "s": {"age": 20}}]
    # a hint by either side's column
    assert get(api, "/pt_friends?select=id,pt_people!second(name)&id=eq.2") == \
        [{"id": 2, "pt_people": {"name": "bo"}}]


def test_several_foreign_keys_without_a_hint_are_a_300_that_lists_them(api, db_url):
    response = api.get("/pt_friends?select=id,pt_people(name)")
    assert response.status_code == 300
    body = response.json()
    assert body["code"] == "PGRST201"
    assert body["message"] == "Could not embed because more than one relationship was found for 'pt_friends' " \
                              "and 'pt_people'"
    assert {"cardinality": "many-to-one", "embedding": "pt_friends with pt_people",
            "relationship": "pt_friends_first_fkey using pt_friends(first) and pt_people(name)"} in body["details"]
    assert len(body["details"]) == 3
    assert body["hint"].startswith("Try changing 'pt_people' to one of the following: ")
    assert "'pt_people!pt_friends_first_fkey', " in body["hint"]
    assert "'pt_people!pt_friends_second_fkey'" in body["hint"]
    if dialect_of(db_url) == "sqlite":  # SQLite names no foreign key: PostgreSQL's default name stands in
        assert "'pt_people!pt_friends_third_fkey'" in body["hint"]
        assert get(api, "/pt_friends?select=id,pt_people!pt_friends_third_fkey(name)&id=eq.1") == \
            [{"id": 1, "pt_people": {"name": "bo"}}]


def test_one_table_under_one_key_twice_is_a_42712_and_under_two_keys_is_fine(api):
    twice = api.get("/pt_friends?select=pt_people!first(name),pt_people!second(name)")
    assert twice.status_code == 400 and twice.json()["code"] == "42712"
    assert twice.json()["message"] == 'table name "pt_friends_pt_people_1" specified more than once'
    assert get(api, "/pt_friends?select=a:pt_people!first(name),b:pt_people!first(age)&id=eq.1") == \
        [{"a": {"name": "sam"}, "b": {"age": 30}}]


def test_no_such_relation_is_a_400_that_may_name_a_near_one(api):
    body = get(api, "/pt_tree?select=id,pt_detail(note)", 400)
    assert body["code"] == "PGRST200"
    assert body["details"] == "Searched for a foreign key relationship between 'pt_tree' and 'pt_detail' " \
                              "in the schema 'public', but no matches were found."
    assert body["hint"] == "Perhaps you meant 'pt_details' instead of 'pt_detail'."
    assert get(api, "/pt_tree?select=id,nothing_like_it(note)", 400)["hint"] is None


def test_a_table_that_refers_to_itself_embeds_its_children_and_its_parent(api):
    assert get(api, "/pt_tree?select=label,pt_tree(label)&id=eq.1") == \
        [{"label": "root", "pt_tree": [{"label": "a"}, {"label": "b"}]}]
    assert get(api, "/pt_tree?select=label,parent_id(label)&id=in.(1,4)&order=id") == \
        [{"label": "root", "parent_id": None}, {"label": "a1", "parent_id": {"label": "a"}}]
    assert get(api, "/pt_tree?select=label,pt_tree!parent_id(label)&id=eq.2") == \
        [{"label": "a", "pt_tree": [{"label": "a1"}]}]
    # a filter and an order through the table itself
    assert get(api, "/pt_tree?select=label,pt_tree!inner(label)&pt_tree.label=eq.a1") == \
        [{"label": "a", "pt_tree": [{"label": "a1"}]}]
    assert [r["label"] for r in get(api, "/pt_tree?select=label,up:parent_id(label)&order=up(label).desc,id")] \
        == ["root", "a", "b", "a1"]  # no parent first (NULLs first, descending), then by the parent's label
    body = get(api, "/pt_tree?select=pt_tree!pt_tree_parent_id_fkey(id)", 400)
    assert body["code"] == "PGRST200" and body["hint"] is None


def test_one_to_one_is_an_object_both_ways(api):
    assert get(api, "/pt_tree?select=label,pt_details(note)&id=in.(1,3)&order=id") == \
        [{"label": "root", "pt_details": {"note": "the root"}}, {"label": "b", "pt_details": None}]
    assert get(api, "/pt_details?select=note,pt_tree(label)&id=eq.2") == \
        [{"note": "first child", "pt_tree": {"label": "a"}}]


def test_many_to_many_embeds_through_the_join_table(api):
    rows = get(api, "/pt_tree?select=label,pt_tags(name)&id=in.(1,2,3)&order=id&pt_tags.order=name")
    assert rows == [{"label": "root", "pt_tags": [{"name": "blue"}, {"name": "red"}]},
                    {"label": "a", "pt_tags": [{"name": "blue"}]}, {"label": "b", "pt_tags": []}]
    assert get(api, "/pt_tags?select=name,pt_tree!inner(label)&pt_tree.label=eq.a") == \
        [{"name": "blue", "pt_tree": [{"label": "a"}]}]
    assert get(api, "/pt_tree?select=label,pt_tags!pt_tree_tags(n:count())&id=eq.1") == \
        [{"label": "root", "pt_tags": [{"n": 2}]}]


# -- aggregates, casts and JSON paths ------------------------------------------------------------

def test_aggregates_group_by_the_other_columns(api):
    assert get(api, "/pt_people?select=count()") == [{"count": 3}]
    assert get(api, "/pt_people?select=age,n:count()&order=age") == [{"age": 20, "n": 2}, {"age": 30, "n": 1}]
    assert get(api, "/pt_people?select=age.sum(),age.max(),oldest:age.min(),age.avg()::int") == \
        [{"sum": 70, "max": 30, "oldest": 20, "avg": 23}]
    assert get(api, "/pt_people?select=total:age.sum()::text&name=neq.sam") == [{"total": "40"}]
    body = get(api, "/pt_people?select=name.sum()", 400)
    assert body["code"] == "42883"
    assert get(api, "/pt_people?select=missing.count()", 400)["message"] == \
        "column pt_people.missing does not exist"


def test_aggregates_in_embeds_group_per_parent(api):
    rows = get(api, "/pt_people?select=name,pt_friends!first(count),n:pt_friends!second(id.count())"
                    "&order=name")
    assert rows == [{"name": "ann", "pt_friends": [{"count": 0}], "n": [{"count": 1}]},
                    {"name": "bo", "pt_friends": [{"count": 0}], "n": [{"count": 1}]},
                    {"name": "sam", "pt_friends": [{"count": 2}], "n": [{"count": 0}]}]
    assert get(api, "/pt_friends?select=id,first(age.sum())&order=id") == \
        [{"id": 1, "first": {"sum": 30}}, {"id": 2, "first": {"sum": 30}}]
    assert get(api, "/pt_tree?select=id,pt_tree(label,count())&id=eq.1") == \
        [{"id": 1, "pt_tree": [{"label": "a", "count": 1}, {"label": "b", "count": 1}]}]
    body = get(api, "/pt_people?select=name,pt_friends!first(sum)", 400)
    assert body == {"code": "42703", "message": "column pt_friends_1.sum does not exist", "details": None,
                    "hint": None}


def test_spreads_of_many_rows_and_spreads_beside_aggregates(api):
    # many rows spread: each column's values in a list (PostgREST 13)
    assert get(api, "/pt_people?select=name,...pt_friends!pt_friends_first_fkey(id,second)&name=eq.sam") == \
        [{"name": "sam", "id": [1, 2], "second": ["ann", "bo"]}]
    assert get(api, "/pt_people?select=name,...pt_friends!pt_friends_first_fkey(id)&name=eq.bo") == \
        [{"name": "bo", "id": []}]
    # a to-one spread beside aggregates: its columns group, its aggregates aggregate, over the joined rows
    assert get(api, "/pt_friends?select=n:count(),...first(age)") == [{"n": 2, "age": 30}]
    assert get(api, "/pt_friends?select=id.count(),...first(total:age.sum(),name)") == \
        [{"count": 2, "total": 60, "name": "sam"}]
    assert get(api, "/pt_friends?select=id.sum(),...first(total:age.sum())") == [{"sum": 3, "total": 60}]
    for one_table_twice in ("/pt_friends?select=count(),...first(age),...second(name)",
                            "/pt_tree?select=count(),...parent_id(label)"):
        assert get(api, one_table_twice, 400)["code"] == "PGRST127"
    assert get(api, "/pt_people?select=name,pt_friends!pt_friends_first_fkey(count(),...second(age))&name=eq.sam") \
        == [{"name": "sam", "pt_friends": [{"count": 2, "age": 20}]}]


def test_casts_and_json_paths_in_select_filters_and_order(api, db_url):
    assert get(api, "/pt_friends?select=id::text,first&id=eq.1") == [{"id": "1", "first": "sam"}]
    assert get(api, "/pt_people?select=name,data->a->b,n:data->a->>n&order=name&name=neq.bo") == \
        [{"name": "ann", "b": "y", "n": "10"}, {"name": "sam", "b": "x", "n": "2"}]
    assert get(api, "/pt_people?select=name&data->a->>b=eq.x") == [{"name": "sam"}]
    assert get(api, "/pt_people?select=name&data->a->n=gt.5") == [{"name": "ann"}]  # a number, as a number
    # JSON values order as numbers (10 before 2, descending); MariaDB, which has no JSON order, by their text
    by_n = [r["name"] for r in get(api, "/pt_people?select=name&data->a->>b=not.is.null&order=data->a->n.desc")]
    assert by_n == (["sam", "ann"] if dialect_of(db_url) == "mysql" else ["ann", "sam"])
    assert get(api, '/pt_people?select=x:data->"a\\"b"->>c,y:data->a->>n,z:data->a->-1&name=eq.sam') == \
        [{"x": None, "y": "2", "z": None}]  # any key, bound; ->> is text on every database
    assert get(api, "/pt_people?select=age->a", 400)["code"] == "42883"  # a path needs a JSON column
    assert get(api, "/pt_people?select=age::regclass", 400)["code"] == "42704"


# -- operators of structured values: JSON, arrays, ranges, regular expressions, text search ----------

THINGS = {
    "postgresql": "CREATE TABLE pt_things (id SERIAL PRIMARY KEY, name VARCHAR(40), doc JSONB, tags TEXT[], "
                  "span INT4RANGE, words TSVECTOR)",
    # SQLite and MariaDB hold no arrays, ranges or text search documents: JSON arrays and text instead
    "sqlite": "CREATE TABLE pt_things (id INTEGER PRIMARY KEY, name VARCHAR(40), doc JSON, tags JSON, "
              "span TEXT, words TEXT)",
    "mysql": "CREATE TABLE pt_things (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(40), doc JSON, tags JSON, "
             "span VARCHAR(40), words TEXT)",
}
THINGS_ROWS = {
    "postgresql": "INSERT INTO pt_things (name, doc, tags, span, words) VALUES "
                  "('Ada', '{\"a\": {\"b\": 1, \"c\": [1, 2]}}', ARRAY['red', 'blue'], '[1,5)', 'fat cat'), "
                  "('bob', '{\"a\": {\"b\": 2}}', ARRAY['green'], '[5,10)', 'cat bat'), "
                  "('Cyd', '[1, 2, 3]', ARRAY['red'], '[20,30)', 'rat mat')",
    "other": "INSERT INTO pt_things (name, doc, tags, span, words) VALUES "
             "('Ada', '{\"a\": {\"b\": 1, \"c\": [1, 2]}}', '[\"red\", \"blue\"]', '[1,5)', 'fat cat'), "
             "('bob', '{\"a\": {\"b\": 2}}', '[\"green\"]', '[5,10)', 'cat bat'), "
             "('Cyd', '[1, 2, 3]', '[\"red\"]', '[20,30)', 'rat mat')",
}


@pytest.fixture
def things(db_url):
    dialect = dialect_of(db_url)
    rows = THINGS_ROWS["postgresql" if dialect == "postgresql" else "other"]
    with reflected(db_url, [THINGS[dialect], rows], ["pt_things"]) as server:
        with httpx.Client(base_url=server.url) as client:
            yield client, dialect


def names(client: httpx.Client, query: str) -> list[str]:
    response = client.get(f"/rest/v1/pt_things?select=name&order=id&{query}")
    assert response.status_code == 200, response.text
    return [row["name"] for row in response.json()]


def test_json_containment_and_overlap_on_every_database(things):
    client, _ = things
    assert names(client, 'doc=cs.{"a":{"b":1}}') == ["Ada"]
    assert names(client, 'doc=cs.{"a":{"c":[2]}}') == ["Ada"]
    assert names(client, "doc=cs.[3,1]") == ["Cyd"]
    assert names(client, 'doc=cd.{"a":{"b":2},"z":0}') == ["bob"]
    assert names(client, "doc=not.cs.[1]") == ["Ada", "bob"]
    assert names(client, "doc=ov.[3,4]") == ["Cyd"]  # only arrays overlap
    # a list as clients send it for an array: on SQLite and MariaDB the array is JSON
    assert names(client, "tags=cs.{red}") == ["Ada", "Cyd"]
    assert names(client, "tags=cs.{red,blue}") == ["Ada"]
    assert names(client, "tags=cd.{red,green,black}") == ["bob", "Cyd"]
    assert names(client, "tags=ov.{green,blue}") == ["Ada", "bob"]
    assert names(client, "or=(tags.cs.{green},name.eq.Cyd)") == ["bob", "Cyd"]
    bad = client.get("/rest/v1/pt_things?doc=cs.{not json")
    assert bad.status_code == 400, bad.text


def test_regular_expressions_on_every_database(things):
    client, _ = things
    assert names(client, "name=match.^[A-C]") == ["Ada", "Cyd"]
    assert names(client, "name=imatch.^[a-c]") == ["Ada", "bob", "Cyd"]
    assert names(client, "name=not.match.d$") == ["Ada", "bob"]
    assert names(client, "name=match(any).{^A,^b}") == ["Ada", "bob"]
    bad = client.get("/rest/v1/pt_things?name=match.(unclosed")
    assert bad.status_code == 400 and bad.json()["code"] in ("22P02", "2201B"), bad.text
    assert client.get("/rest/v1/pt_things?id=match.1").json()["code"] == "22P02"  # a text column only


def test_ranges_and_text_search_on_postgresql_and_a_clear_error_elsewhere(things):
    client, dialect = things
    if dialect != "postgresql":
        refused = client.get("/rest/v1/pt_things?span=cs.[2,3)")
        assert refused.status_code == 400 and refused.json()["code"] == "42883", refused.text
        assert "range" in refused.json()["hint"]
        searched = client.get("/rest/v1/pt_things?words=fts.cat")
        assert searched.status_code == 400 and searched.json()["code"] == "PGRST127", searched.text
        return
    assert names(client, "span=cs.[2,3)") == ["Ada"]
    assert names(client, "span=cd.[0,10)") == ["Ada", "bob"]
    assert names(client, "span=ov.[4,6)") == ["Ada", "bob"]
    assert names(client, "span=sl.[10,20)") == ["Ada", "bob"]
    assert names(client, "span=sr.[10,20)") == ["Cyd"]
    assert names(client, "span=nxr.[0,10)") == ["Ada", "bob"]
    assert names(client, "span=nxl.[5,10)") == ["bob", "Cyd"]
    assert names(client, "span=adj.[10,20)") == ["bob", "Cyd"]
    assert client.get("/rest/v1/pt_things?span=cs.[3,1)").json()["code"] == "22P02"  # no range
    assert names(client, "tags=cs.{red}") == ["Ada", "Cyd"]  # a real array
    assert names(client, "words=fts.cat") == ["Ada", "bob"]
    assert names(client, "words=fts(english).fat %26 cat") == ["Ada"]
    assert names(client, "words=plfts.rat mat") == ["Cyd"]
    assert names(client, "words=phfts(simple).cat") == ["Ada", "bob"]
    assert names(client, "words=wfts(english).cat -fat") == ["bob"]
    assert names(client, "name=fts(simple).ada") == ["Ada"]  # text becomes a document first
    assert client.get("/rest/v1/pt_things?words=fts(nosuch).cat").json()["code"] == "22P02"
    assert client.get("/rest/v1/pt_things?words=fts.cat %26 %26").json()["code"] == "22P02"


def test_tiddlys_own_api_has_the_same_operators(things):
    client, dialect = things
    found = client.request("FETCH", "/pt_things", json={"where": {"tags": {"contains": ["red"]},
                                                                  "name": {"imatch": "^a"}},
                                                        "select": ["name"]})
    assert found.status_code == 200, found.text
    assert found.json()["data"] == [{"name": "Ada"}]
    wrong = client.request("FETCH", "/pt_things", json={"where": {"name": {"contains": ["x"]}}})
    assert wrong.status_code == 400 and wrong.json()["code"] == "bad_value"
    if dialect == "postgresql":
        ranged = client.request("FETCH", "/pt_things", json={"where": {"span": {"adjacent": "[10,20)"},
                                                                       "words": {"fts": ["cat", "english"]}},
                                                             "select": ["name"]})
        assert ranged.json()["data"] == [{"name": "bob"}]
    else:
        refused = client.request("FETCH", "/pt_things", json={"where": {"words": {"fts": "cat"}}})
        assert refused.status_code == 400 and refused.json()["code"] in ("bad_value", "unsupported")


# -- other answers: query plans, estimated counts, GeoJSON, CSV -----------------------------------

def test_a_query_plan_on_postgresql_and_a_clear_error_elsewhere(api, db_url):
    wanted = {"Accept": 'application/vnd.pgrst.plan+json; for="application/json"; options=analyze'}
    response = api.get("/pt_tree?select=label,pt_tree!inner(label)&pt_tree.label=eq.a1", headers=wanted)
    if dialect_of(db_url) != "postgresql":
        assert response.status_code == 400 and response.json()["code"] == "PGRST127", response.text
        return
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/vnd.pgrst.plan+json")
    (plan,) = response.json()
    assert plan["Plan"]["Node Type"] == "Aggregate" and "Actual Rows" in plan["Plan"]  # json_agg of the rows
    text = api.get("/pt_tree?select=label,pt_tree(label)&pt_tree.label=eq.a1",
                   headers={"Accept": "application/vnd.pgrst.plan+text; options=verbose"}).text
    assert text.startswith("Aggregate  (cost=")
    assert "(pt_tree_1.label)::text = 'a1'::text" in text  # the embed's filter, on its own alias
    unknown = api.get("/pt_tree?select=label", headers={"Accept": "application/vnd.pgrst.plan+text; options=nope"})
    assert unknown.status_code == 406 and unknown.json()["code"] == "PGRST107"
    assert api.post("/pt_tags", json={"name": "x"}, headers=wanted).status_code == 406  # reads only


def test_a_verbose_plan_of_a_table_with_a_hidden_column_is_refused(db_url):
    if dialect_of(db_url) != "postgresql":
        pytest.skip("query plans are PostgreSQL's")
    metadata = MetaData()
    Table("pt_secret", metadata, Column("id", Integer, primary_key=True),
          Column("token", String(20), info={"policy": "hidden"}))
    with serving(db_url, metadata) as server:
        url = server.url + "/rest/v1/pt_secret?select=id"
        verbose = httpx.get(url, headers={"Accept": "application/vnd.pgrst.plan+text; options=verbose"})
        assert verbose.status_code == 400 and "token" not in verbose.text
        plain = httpx.get(url, headers={"Accept": "application/vnd.pgrst.plan+text"})
        assert plain.status_code == 200 and "token" not in plain.text


def test_planned_and_estimated_counts(api, db_url):
    planned = api.get("/pt_people?select=name&limit=1", headers={"Prefer": "count=planned"})
    estimated = api.get("/pt_people?select=name&limit=1", headers={"Prefer": "count=estimated"})
    total = int(planned.headers["Content-Range"].split("/")[1])
    if dialect_of(db_url) == "postgresql":  # the planner's estimate of a table it never analysed
        assert total > 0 and planned.status_code == 206
    else:  # no planner to ask: counted
        assert total == 3
    assert estimated.headers["Content-Range"].endswith("/3") or total > 1


def test_geojson_from_the_column_that_holds_geometries(db_url):
    statements = [f"CREATE TABLE pt_shops (id {AUTO_PK[dialect_of(db_url)]}, address VARCHAR(40), "
                  "geom VARCHAR(80))",
                  "INSERT INTO pt_shops (address, geom) VALUES ('1369 Cambridge St', "
                  "'SRID=4326;POINT(-71.10044 42.373695)'), ('Nowhere', NULL)"]
    with reflected(db_url, statements, ["pt_shops"]) as server:
        response = httpx.get(server.url + "/rest/v1/pt_shops?order=id", headers={"Accept": "application/geo+json"})
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/geo+json")
        assert response.json() == {"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-71.10044, 42.373695]},
             "properties": {"id": 1, "address": "1369 Cambridge St"}},
            {"type": "Feature", "geometry": None, "properties": {"id": 2, "address": "Nowhere"}}]}
        none = httpx.get(server.url + "/rest/v1/pt_shops?select=address", headers={"Accept": "application/geo+json"})
        assert none.status_code == 406 and none.json()["code"] == "PGRST107"
    if dialect_of(db_url) == "mysql":  # a spatial type of its own: its SRID, then WKB
        statements = ["CREATE TABLE pt_shops (id INT AUTO_INCREMENT PRIMARY KEY, place POINT)",
                      "INSERT INTO pt_shops (place) VALUES (ST_GeomFromText('POINT(1.5 2)'))"]
        with reflected(db_url, statements, ["pt_shops"]) as server:
            found = httpx.get(server.url + "/rest/v1/pt_shops", headers={"Accept": "application/geo+json"}).json()
            assert found["features"][0]["geometry"] == {"type": "Point", "coordinates": [1.5, 2.0]}


def test_csv_fields_as_postgresql_writes_records(api):
    text = api.get("/pt_people?select=name,age,data&order=name", headers={"Accept": "text/csv"}).text
    assert text == ('name,age,data\n'
                    'ann,20,"{""a"": {""b"": ""y"", ""n"": 10}}"\n'
                    'bo,20,\n'
                    'sam,30,"{""a"": {""b"": ""x"", ""n"": 2}}"')
