"""postgrest-py against a real `tiddly serve` (granian, several workers) at /rest/v1, on every database:
what a front-end does, then the same with API keys turned on."""
from __future__ import annotations

import pytest
from postgrest import APIError, CountMethod, SyncPostgrestClient
from sqlalchemy import delete

from tiddly.models import ApiKey
from tiddly.services import auth
from tiddly.storage import Database


def client(base: str, **headers) -> SyncPostgrestClient:
    return SyncPostgrestClient(base + "/rest/v1", headers={"Accept": "application/json", **headers})


def test_postgrest_py_against_tiddly_serve(db_url, live_server_factory):
    server = live_server_factory(db_url, workers=2, threads=2)
    with client(server.url) as rest:
        stores = rest.from_("stores").insert([{"name": "North"}, {"name": "South"}]).execute().data
        north, south = (s["id"] for s in stores)
        rest.from_("items").insert([{"name": "tea", "price": 3.5, "store_id": north},
                                    {"name": "fig", "price": 6, "store_id": south}]).execute()
        page = rest.from_("items").select("name,stores(name)", count=CountMethod.exact).gt("price", 1) \
            .order("price", desc=True).range(0, 0).execute()
        assert page.data == [{"name": "fig", "stores": {"name": "South"}}] and page.count == 2
        rest.from_("items").update({"price": 4}).eq("name", "tea").execute()
        assert rest.from_("items").select("price").eq("name", "tea").single().execute().data == {"price": 4.0}
        rest.from_("user").upsert({"email": "ann@example.com", "name": "Ann"}, on_conflict="email").execute()
        with pytest.raises(APIError) as unique:
            rest.from_("user").insert({"email": "ann@example.com"}).execute()
        assert unique.value.code == "23505"
        rest.from_("items").delete().eq("name", "fig").execute()
        assert [i["name"] for i in rest.from_("items").select("name").execute().data] == ["tea"]

    database = Database(db_url)
    with database.session(write=True) as session:
        key = auth.create_key(session, "front-end", "write")
    try:
        with client(server.url) as anonymous, pytest.raises(APIError) as refused:
            anonymous.from_("items").select("*").execute()
        assert refused.value.code == "PGRST302"
        for headers in ({"apikey": key}, {"apikey": key, "Authorization": f"Bearer {key}"}):
            with client(server.url, **headers) as rest:
                assert rest.from_("items").select("name").execute().data == [{"name": "tea"}]
        with client(server.url, apikey="tdk_not-a-key") as wrong, pytest.raises(APIError) as unknown:
            wrong.from_("items").select("*").execute()
        assert unknown.value.code == "PGRST301"
    finally:
        with database.session(write=True) as session:  # later tests on this database expect open mode
            session.execute(delete(ApiKey))
        database.dispose()
