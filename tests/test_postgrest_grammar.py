"""The PostgREST dialect's parser on its own: every malformed or unsupported piece of a query
string or header is a 4xx in PostgREST's shape (never a 500), and reading it costs no
database work when it is refused. Also the pure pieces: splitting, quoting, Prefer, Range, Accept.
"""
from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, Table

from tiddly import create_app
from tiddly.config import Config
from tiddly.registry import table_spec
from tiddly.web.postgrest import grammar, plan
from tiddly.web.postgrest.grammar import PostgrestError


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app(Config(database_url=f"sqlite:///{tmp_path_factory.mktemp('db') / 'tiddly.db'}"))
    client = app.test_client()
    client.post("/rest/v1/stores", json=[{"name": "North"}, {"name": "South"}])
    client.post("/rest/v1/items", json=[{"name": "tea", "price": 3.5, "store_id": 1}])
    yield client
    app.extensions["tiddly"].db.dispose()


def assert_postgrest_error(response, status: int, code: str) -> dict:
    body = response.get_json()
    assert (response.status_code, body and body.get("code")) == (status, code), response.get_data(as_text=True)
    assert set(body) == {"code", "message", "details", "hint"}
    return body


@pytest.mark.parametrize("query, status, code", [
    ("price=eq", 400, "PGRST100"),                      # no value
    ("price=3", 400, "PGRST100"),                       # no operator
    ("price=equals.3", 400, "PGRST100"),                # unknown operator
    ("price=not.not.eq.3", 400, "PGRST100"),
    ("price=in.1,2", 400, "PGRST100"),                  # in takes (...)
    ("price=in.(1,2", 400, "PGRST100"),
    ("name=is.maybe", 400, "PGRST100"),
    ("name=eq(some).{a}", 400, "PGRST100"),             # modifiers are any / all
    ("name=in(any).{a}", 400, "PGRST100"),
    ("name=eq(any).a,b", 400, "PGRST100"),              # any takes {...}
    ("or=price.eq.1", 400, "PGRST100"),                 # or takes (...)
    ("or=(price.eq.1", 400, "PGRST100"),
    ("or=()", 400, "PGRST100"),
    ("or=(price)", 400, "PGRST100"),
    ("or=(price.eq.1,xor(price.eq.2))", 400, "PGRST100"),
    ('or=("price.eq.1)', 400, "PGRST100"),              # an unclosed quote
    ("and=" + "and(" * 12 + "price.eq.1" + ")" * 12, 400, "PGRST100"),  # nests too deep
    ("order=price.up", 400, "PGRST100"),
    ("order=price.desc.nullsfirst.asc", 400, "PGRST100"),
    ("order=,", 400, "PGRST100"),
    ("limit=ten", 400, "PGRST100"),
    ("offset=1.5", 400, "PGRST100"),
    ("limit=-1", 416, "PGRST103"),
    ("offset=-3", 416, "PGRST103"),
    ("select=", 200, None),                             # empty select: every column, as PostgREST
    ("select=name,,price", 400, "PGRST100"),
    ("select=stores(name", 400, "PGRST100"),
    ('select="name', 400, "PGRST100"),
    ("select=" + "stores(" * 12 + "name" + ")" * 12, 400, "PGRST100"),
    ("select=name::text,price::int", 200, None),        # casts, from a list
    ("select=name::regclass", 400, "42704"),
    ("select=name::", 400, "PGRST100"),
    ("select=name->>x", 400, "42883"),                  # JSON paths need a JSON column
    ("select=name->", 400, "PGRST100"),
    ("select=price,...stores(name)", 200, None),        # a to-one spread
    ("select=...s:stores(name)", 400, "PGRST100"),      # a spread has no alias
    ("select=...stores(name),...stores(id)", 400, "42712"),
    ("select=count()", 200, None),                      # aggregates
    ("select=price.avg()::int,store_id", 200, None),
    ("select=name.sum()", 400, "42883"),                # sum needs a number
    ("select=sum()", 400, "PGRST100"),                  # and a column
    ("select=nope.max()", 400, "42703"),
    ("select=count(),stores(name)", 400, "PGRST127"),  # aggregates beside embeds
    ("select=stores!nope(name)", 400, "PGRST200"),      # a hint that names no foreign key column
    ("select=stores!store_id(name)", 200, None),        # one that does
    ("select=stores!inner!left!x!y(name)", 400, "PGRST100"),
    ("select=a:stores(name),b:stores(id)", 200, None),  # one relation under two keys
    ("select=stores(name),stores(id)", 400, "42712"),   # under one
    ("name=fts.tea", 400, "PGRST127"),                  # SQLite has no text search
    ("name=plfts(english).tea", 400, "PGRST127"),
    ("name=fts(a b).tea", 400, "PGRST100"),             # a configuration is a name
    ("name=match.^t", 200, None),
    ("name=match.(", 400, "22P02"),
    ("price=match.1", 400, "22P02"),                    # a regular expression needs text
    ("price=cs.{1}", 400, "42883"),                     # containment needs JSON, an array or a range
    ("name=sl.[1,2)", 400, "42883"),
    ("name[0]=eq.tea&name[1]=like.t*", 200, None),      # a key is read up to a bracket
    ("order=stores(name)", 400, "PGRST108"),            # a related order names an embed
    ("select=name,stores(name)&order=stores(name).desc,name", 200, None),
    ("select=name,s:stores(name)&order=s(name).nullsfirst", 200, None),  # by its alias
    ("select=name,stores(name)&order=stores(nope)", 400, "42703"),
    ("select=name,stores(name)&order=stores(name", 400, "PGRST100"),
    ("select=name,stores(name)&order=stores(na(me))", 400, "PGRST100"),
    ("select=name,stores(name)&order=stores(name)x", 400, "PGRST100"),
    ("select=name,stores(name)&order=(name)", 400, "PGRST100"),
    ("stores.name=eq.North", 400, "PGRST108"),          # not embedded
    ("select=name,stores(name)&stores=eq.1", 400, "PGRST120"),
    ("price=like.3*", 400, "22P02"),                    # like needs a text column
    ("name=is.true", 400, "22P02"),                     # true/false need a boolean column
    ("price=gt.abc", 400, "22P02"),
    ("price=gt.nan", 400, "22P02"),
    ("id=eq.99999999999999999999", 400, "22P02"),
    ("id=in.(1,x)", 400, "22P02"),
    ("nope=eq.1", 400, "42703"),
    ("select=nope", 400, "42703"),
    ("order=nope", 400, "42703"),
    ("or=(nope.eq.1)", 400, "42703"),
    ("columns=name", 400, "PGRST100"),                  # a write's parameter on a read
    ("on_conflict=name", 400, "PGRST100"),
    ("price=in.(" + ",".join(["1"] * 1001) + ")", 400, "PGRST100"),  # in lists are capped
    ("limit=5000", 200, None),                          # capped at max_limit, as db-max-rows caps it
])
def test_a_bad_query_string_is_a_postgrest_4xx(client, query, status, code):
    response = client.get(f"/rest/v1/items?{query}")
    if code is None:
        assert response.status_code == status, response.get_data(as_text=True)
    else:
        assert_postgrest_error(response, status, code)


@pytest.mark.parametrize("headers, status, code", [
    ({"Accept": "application/xml"}, 406, "PGRST107"),
    ({"Accept": "text/html;q=1, application/json;q=0"}, 406, "PGRST107"),
    ({"Accept-Profile": "other"}, 406, "PGRST106"),
    ({"Range": "5-2"}, 416, "PGRST103"),
    ({"Prefer": "handling=strict, count=sometimes"}, 400, "PGRST122"),
    ({"Prefer": "count=sometimes"}, 200, None),         # lenient: an unknown preference is not applied
    ({"Range": "bytes=0-1"}, 200, None),                # not a row range: ignored, as in PostgREST
    ({"Accept": "text/html, application/vnd.pgrst.object+json"}, 406, "PGRST116"),  # two rows, one asked for
])
def test_bad_headers(client, headers, status, code):
    response = client.get("/rest/v1/stores", headers=headers)
    if code is None:
        assert response.status_code == status
    else:
        assert_postgrest_error(response, status, code)


@pytest.mark.parametrize("method, path, body, headers, status, code", [
    ("POST", "/rest/v1/stores", None, {}, 415, "PGRST102"),
    ("POST", "/rest/v1/stores", b"", {"Content-Type": "application/json"}, 400, "PGRST102"),
    ("POST", "/rest/v1/stores", b"[1, 2]", {"Content-Type": "application/json"}, 400, "PGRST102"),
    ("POST", "/rest/v1/stores", b'"x"', {"Content-Type": "application/json"}, 400, "PGRST102"),
    ("POST", "/rest/v1/stores", b"[" * 600 + b"]" * 600, {"Content-Type": "application/json"}, 400, "PGRST102"),
    ("PATCH", "/rest/v1/stores?id=eq.1", b'name\nx\n', {"Content-Type": "text/csv"}, 415, "PGRST102"),
    ("POST", "/rest/v1/stores", b'{"name": "x"}', {"Content-Type": "text/csv"}, 400, "PGRST204"),
    ("POST", "/rest/v1/stores", b'name\nx\ny,z\n', {"Content-Type": "text/csv"}, 400, "22P02"),
    ("POST", "/rest/v1/stores", b'name\nx\n\xff\n', {"Content-Type": "text/csv"}, 400, "22P02"),
    ("POST", "/rest/v1/stores", b'id,name\n7,x\n', {"Content-Type": "text/csv"}, 403, "42501"),
    ("POST", "/rest/v1/stores?name=eq.x", b'{"name": "x"}', {"Content-Type": "application/json"}, 400, "PGRST100"),
    ("POST", "/rest/v1/stores?order=id", b'{"name": "x"}', {"Content-Type": "application/json"}, 400, "PGRST127"),
    ("POST", "/rest/v1/stores", b'{"name": "x"}', {"Content-Type": "application/json", "Content-Profile": "x"},
     406, "PGRST106"),
    ("POST", "/rest/v1/stores", b'{"name": "x"}', {"Content-Type": "application/json", "Idempotency-Key": "k"},
     400, "PGRST100"),
    ("POST", "/rest/v1/stores?on_conflict=name", b'{"name": "x"}',
     {"Content-Type": "application/json", "Prefer": "resolution=merge-duplicates"}, 400, "PGRST100"),
    ("PATCH", "/rest/v1/stores", b'{"name": "x"}', {"Content-Type": "application/json"}, 400, "21000"),
    ("PATCH", "/rest/v1/stores?id=eq.1", b'[{"name": "x"}]', {"Content-Type": "application/json"}, 400, "PGRST102"),
    ("PATCH", "/rest/v1/items?id=eq.1&select=id,stores(id)&order=stores(id)&limit=1", b'{"name": "x"}',
     {"Content-Type": "application/json"}, 400, "PGRST127"),
    ("DELETE", "/rest/v1/stores?id=gt.0&limit=-1", None, {}, 416, "PGRST103"),
    ("PATCH", "/rest/v1/stores?id=eq.1", b'{"id": 5}', {"Content-Type": "application/json"}, 403, "42501"),
    ("DELETE", "/rest/v1/stores", None, {}, 400, "21000"),
    ("DELETE", "/rest/v1/stores?items.id=eq.1&select=items(id)", None, {}, 400, "21000"),
    ("PUT", "/rest/v1/stores?id=eq.1&limit=1", b'{"id": 1, "name": "x"}', {"Content-Type": "application/json"},
     400, "PGRST114"),
    ("PUT", "/rest/v1/stores?id=gt.1", b'{"id": 1, "name": "x"}', {"Content-Type": "application/json"},
     405, "PGRST105"),
    ("DELETE", "/rest/v1/patient_readings?id=eq.1", None, {}, 405, "PGRST117"),
    ("GET", "/rest/v1/stores/1", None, {}, 404, "PGRST125"),
    ("POST", "/rest/v1/rpc/f", b"{}", {"Content-Type": "application/json"}, 404, "PGRST202"),
    ("PATCH", "/rest/v1/rpc/f", b"{}", {"Content-Type": "application/json"}, 405, "PGRST101"),
    ("FETCH", "/rest/v1/stores", b'{"where": {"id": 1}}', {"Content-Type": "application/json"}, 405, "PGRST117"),
    ("QUERY", "/rest/v1/stores", b'{}', {"Content-Type": "application/json"}, 405, "PGRST117"),
    ("PROPFIND", "/rest/v1/stores", None, {}, 405, "PGRST117"),
    ("PUT", "/rest/v1/", b'{"name": "x"}', {"Content-Type": "application/json"}, 405, "PGRST117"),
    ("DELETE", "/rest/v1", None, {}, 405, "PGRST117"),
    ("FETCH", "/rest/v1/stores/1", None, {}, 404, "PGRST125"),
])
def test_bad_writes(client, method, path, body, headers, status, code):
    response = client.open(path, method=method, data=body, headers=headers)
    assert_postgrest_error(response, status, code)
    assert [s["name"] for s in client.get("/rest/v1/stores?order=id").get_json()] == ["North", "South"]


def test_every_verb_under_the_path_is_the_dialects(client):
    """OPTIONS lists what a path serves, a 405 says it too; none falls through to Tiddly's own
    routes (PUT /rest/v1/ was Tiddly's PUT /rest/<key>)."""
    table_verbs = "OPTIONS, GET, HEAD, POST, PATCH, PUT, DELETE"
    for path, allow in (("/rest/v1/stores", table_verbs), ("/rest/v1/", "OPTIONS, GET, HEAD"),
                        ("/rest/v1/rpc/f", "OPTIONS, GET, HEAD, POST"),
                        ("/rest/v1/patient_readings", "OPTIONS, GET, HEAD")):
        answer = client.options(path)
        assert (answer.status_code, answer.headers["Allow"]) == (200, allow), path
    refused = client.open("/rest/v1/stores", method="QUERY")
    assert refused.headers["Allow"] == table_verbs
    assert assert_postgrest_error(client.delete("/rest/v1/patient_readings?id=eq.1"), 405, "PGRST117")["details"] \
        == "the table 'patient_readings' is read-only"


def test_an_oversized_body_is_a_413(tmp_path):
    app = create_app(Config(database_url=f"sqlite:///{tmp_path / 'tiddly.db'}", max_body_bytes=100))
    response = app.test_client().post("/rest/v1/stores", json={"name": "x" * 200})
    assert_postgrest_error(response, 413, "PGRST102")
    app.extensions["tiddly"].db.dispose()


def test_a_to_many_spread_lists_each_columns_values(client):
    response = client.get("/rest/v1/stores?select=store:name,...items(name)&name=eq.North")
    assert response.get_json() == [{"store": "North", "name": ["tea"]}]


def test_the_dialect_can_move_or_be_switched_off(tmp_path):
    url = f"sqlite:///{tmp_path / 'tiddly.db'}"
    moved = create_app(Config(database_url=url, postgrest_path="/api/"))
    assert moved.test_client().get("/api/stores").status_code == 200
    assert moved.test_client().get("/rest/v1/stores").status_code == 404
    off = create_app(Config(database_url=url, postgrest_path=""))
    assert off.test_client().get("/rest/v1/stores").get_json()["code"] == "unknown_table"  # Tiddly's /<table>/<pk>
    for bad in ("api", "/-/api", "/-"):
        with pytest.raises(ValueError):
            create_app(Config(database_url=url, postgrest_path=bad))
    for app in (moved, off):
        app.extensions["tiddly"].db.dispose()


# -- the pure readers -----------------------------------------------------------------------

def test_split_respects_quotes_parentheses_and_braces():
    assert grammar.split('a,"b,\\"c",d(e,f),{g,h}') == ["a", '"b,\\"c"', "d(e,f)", "{g,h}"]
    assert grammar.split("a.b.c", ".") == ["a", "b", "c"]
    assert grammar.unquote(' "x \\" y" ') == 'x " y'
    for bad in ('"abc', "(a", "a)", "a}"):
        with pytest.raises(PostgrestError):
            grammar.split(bad + ",(")


def test_prefer_range_and_accept():
    known, other = grammar.parse_prefer(["return=representation, count=exact", "missing=default,tx=rollback",
                                         "max-affected=5,resolution=merge-duplicates, handling=strict, timezone=UTC"])
    assert known == {"return": "representation", "count": "exact", "missing": "default", "max-affected": "5",
                     "resolution": "merge-duplicates", "handling": "strict", "tx": "rollback"}
    assert other == ["timezone=UTC"]
    assert grammar.parse_range("0-9") == (0, 9) and grammar.parse_range("10-") == (10, None)
    assert grammar.parse_range("x") is None and grammar.parse_range(None) is None
    assert grammar.parse_accept(None).kind == "json"
    assert grammar.parse_accept("application/vnd.pgrst.object+json;nulls=stripped") == grammar.Media("object", True)
    assert grammar.parse_accept("text/html, text/csv;q=0.5").kind == "csv"


def test_order_terms():
    Order = grammar.Order
    assert grammar.parse_order('a.desc.nullslast,"b c",d.nullsfirst,s(e).desc,"x y"("f(g)")') == [
        Order("a", True, "last"), Order("b c"), Order("d", False, "first"), Order("e", True, None, "s"),
        Order("f(g)", False, None, "x y")]


def test_order_puts_nulls_where_postgresql_does_unless_told():
    columns = ["a", "b", "c", "d", 'e "f"']
    spec = table_spec(Table("t", MetaData(), Column("id", Integer, primary_key=True),
                            *(Column(name, Integer) for name in columns)))
    node = grammar.parse_params([("order", 'a,b.desc,c.nullsfirst,d.desc.nullslast,"e \\"f\\""')], 8).root
    terms = [(t.column.name, t.descending, t.nulls) for t in plan.order(spec, node)]
    assert terms == [("a", False, "last"), ("b", True, "first"), ("c", False, "first"), ("d", True, "last"),
                     ('e "f"', False, "last")]  # and nothing else: no primary key after, as in PostgREST
    limited = [(t.column.name, t.descending, t.nulls) for t in plan.order(spec, node, by_key=True)]
    assert limited == terms + [("id", False, None)]  # a limited PATCH or DELETE ends it with the key


def test_select_reads_aliases_hints_and_inner():
    node = grammar.parse_select("*,n:name,s:stores!store_id!inner(id,items())", 8)
    assert node.star and node.fields == [grammar.Field("n", "name")]
    (embed,) = node.embeds
    assert (embed.key, embed.relation, embed.hint, embed.inner) == ("s", "stores", "store_id", True)
    assert embed.node.fields == [grammar.Field("id", "id")] and embed.node.embeds[0].node.fields == []


def test_select_reads_casts_json_paths_and_aggregates():
    fields = grammar.parse_select('id::text,t:data->a->>"b c",data->0,count(),n:count()::text,'
                                  'price.sum(),avg:price.avg()::int,count', 8).fields
    assert fields == [
        grammar.Field("id", "id", cast="text"),
        grammar.Field("t", "data", (("->", "a"), ("->>", "b c"))),
        grammar.Field("0", "data", (("->", "0"),)),
        grammar.Field("count", "*", aggregate="count"),
        grammar.Field("n", "*", aggregate="count", aggregate_cast="text"),
        grammar.Field("sum", "price", aggregate="sum"),
        grammar.Field("avg", "price", aggregate="avg", aggregate_cast="int"),
        grammar.Field("count", "count"),  # a column, or (plan.py) count() when the table has none
    ]


# -- never a 500 ------------------------------------------------------------------------------

PIECES = st.sampled_from([
    "select", "order", "limit", "offset", "or", "and", "not", "id", "name", "price", "store_id", "stores",
    "items", "eq", "neq", "in", "is", "like", "ilike", "fts", "any", "all", "null", "true", "asc", "desc",
    "nullsfirst", "*", ".", ",", "(", ")", "{", "}", '"', "\\", ":", "::", "!", "inner", "->", "-1", "1",
    "1.5", "%", "'", "\x00", "💥", " ",
])
TEXT = st.lists(PIECES | st.text(max_size=3), max_size=12).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(TEXT, TEXT), max_size=4), prefer=TEXT, range_=TEXT, accept=TEXT)
def test_no_query_string_or_header_is_a_500(client, pairs, prefer, range_, accept):
    query = "&".join(f"{quote(k.encode('utf-8', 'surrogatepass'))}={quote(v.encode('utf-8', 'surrogatepass'))}"
                     for k, v in pairs)
    headers = {"Prefer": prefer, "Range": range_, "Accept": accept}
    for table in ("items", "stores"):
        response = client.get(f"/rest/v1/{table}?{query}", headers={k: v for k, v in headers.items()
                                                                     if v.isprintable() and v.isascii()})
        assert response.status_code < 500, (query, response.get_data(as_text=True))
        if response.status_code >= 400:
            assert set(response.get_json()) == {"code", "message", "details", "hint"}
