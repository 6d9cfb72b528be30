"""Each server's URL grammar for the bench's workloads, as bench/run.py's answer checks speak it
(bench/wrk.lua speaks the same in Lua for the timed load). A style answers, per workload, the
request to send and where the rows are in the answer.

- tiddly: Tiddly's own query language (where=JSON, orderby=, limit=, offset=);
- plain: the hand-written apps (reference, floor, flask_floor), one route per operation;
- sandman2: /user/ (named after the model class) with ?column=value, sort=-column, limit= and page=N
  (pages of `limit` rows);
- restless: Flask-Restless-NG's JSON:API under /api/users, filter[objects]=[...], sort=, page[size]=,
  page[number]=; bodies are {"data": {"type": "users", "attributes": {...}}}.
"""
from __future__ import annotations

import json
from typing import ClassVar
from urllib.parse import quote, urlencode

JSON = {"Content-Type": "application/json"}
JSONAPI = {"Content-Type": "application/vnd.api+json", "Accept": "application/vnd.api+json"}

# What a server cannot express, and why: its run is reported n/a with the reason.
NOT_EXPRESSIBLE = {
    ("sandman2", "page_age"): "sandman2 filters by = and LIKE only (no range)",
    ("sandman2", "bulk"): "sandman2's POST takes one object",
    ("restless", "bulk"): "Flask-Restless-NG's POST creates one resource (JSON:API 1.0)",
}


def not_expressible(kind: str, workload: str) -> str | None:
    """Why the server cannot run the workload, or None."""
    return NOT_EXPRESSIBLE.get((kind, workload))


class Tiddly:
    headers: ClassVar[dict] = JSON
    status: ClassVar[dict] = {"insert": 201, "bulk": 201}

    def get(self, pk):
        return "GET", f"/users/{pk}", None

    def page_name(self, name):
        return "GET", ("/users?where=" + quote(json.dumps({"name": name})) + "&orderby=" + quote("email desc")
                       + "&limit=20&offset=40"), None

    def page_age(self):
        return "GET", "/users?where=" + quote(json.dumps({"age": {"gt": 30, "lt": 40}})) + "&orderby=id&limit=50", None

    def insert(self, item):
        return "POST", "/users", item

    def update(self, pk, age):
        return "PATCH", f"/users/{pk}", {"age": age}

    def delete(self, pk):
        return "DELETE", f"/users/{pk}", None

    def bulk(self, items):
        return "POST", "/users", items

    def one(self, body) -> dict:
        return body["data"]

    def rows(self, body) -> list[dict]:
        return body["data"]

    def created_id(self, body) -> int:
        return body["id"]


class Plain(Tiddly):
    def page_name(self, name):
        return "GET", f"/users/by-name/{name}?limit=20&offset=40", None

    def page_age(self):
        return "GET", "/users/by-age?gt=30&lt=40&limit=50", None

    def bulk(self, items):
        return "POST", "/users/bulk", items


class Sandman2(Tiddly):
    status: ClassVar[dict] = {"insert": 201, "delete": 204}

    def get(self, pk):
        return "GET", f"/user/{pk}", None

    def page_name(self, name):
        return "GET", f"/user/?name={name}&sort=-email&limit=20&page=3", None

    def insert(self, item):
        return "POST", "/user/", item

    def update(self, pk, age):
        return "PATCH", f"/user/{pk}", {"age": age}

    def delete(self, pk):
        return "DELETE", f"/user/{pk}", None

    def one(self, body):
        return body

    def rows(self, body):
        return body["resources"]


class Restless(Tiddly):
    headers: ClassVar[dict] = JSONAPI
    status: ClassVar[dict] = {"insert": 201, "update": 204, "delete": 204}

    def get(self, pk):
        return "GET", f"/api/users/{pk}", None

    def _page(self, filters, sort, size, number):
        query = urlencode({"filter[objects]": json.dumps(filters), "sort": sort, "page[size]": size,
                           "page[number]": number})
        return "GET", "/api/users?" + query, None

    def page_name(self, name):
        return self._page([{"name": "name", "op": "eq", "val": name}], "-email", 20, 3)

    def page_age(self):
        return self._page([{"name": "age", "op": "gt", "val": 30}, {"name": "age", "op": "lt", "val": 40}], "id", 50, 1)

    def insert(self, item):
        return "POST", "/api/users", {"data": {"type": "users", "attributes": item}}

    def update(self, pk, age):
        return "PATCH", f"/api/users/{pk}", {"data": {"type": "users", "id": str(pk), "attributes": {"age": age}}}

    def delete(self, pk):
        return "DELETE", f"/api/users/{pk}", None

    @staticmethod
    def _row(resource):
        return {"id": int(resource["id"]), **resource["attributes"]}

    def one(self, body):
        return self._row(body["data"])

    def rows(self, body):
        return [self._row(r) for r in body["data"]]

    def created_id(self, body):
        return int(body["data"]["id"])


STYLES = {"tiddly": Tiddly(), "plain": Plain(), "sandman2": Sandman2(), "restless": Restless()}
