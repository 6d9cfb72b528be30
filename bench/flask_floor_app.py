"""Flask's own ceiling: the floor's handlers (the driver, hand-written SQL, orjson) behind
Flask's routing, request and response objects, and nothing else. Every Flask app does at
least this much work per request, so tiddly/flask_floor is what Tiddly adds to Flask and
flask_floor/floor is what Flask itself costs. Same URLs as the reference and the floor.

    python bench/run.py --servers tiddly,floor,flask_floor
"""
from __future__ import annotations

import floor_app
import orjson
from flask import Flask, Response, request

app = Flask(__name__)


def _answer(handler, arg=None) -> Response:
    status, payload = handler(arg, request.args.to_dict(flat=False), request.get_data())
    return Response(orjson.dumps(payload), status, content_type="application/json")


app.add_url_rule("/users/<int:uid>", "get_user", lambda uid: _answer(floor_app.get_user, uid))
app.add_url_rule("/users/<int:uid>", "update_user", lambda uid: _answer(floor_app.update_user, uid),
                 methods=["PATCH"])
app.add_url_rule("/users/<int:uid>", "delete_user", lambda uid: _answer(floor_app.delete_user, uid),
                 methods=["DELETE"])
app.add_url_rule("/users/by-name/<name>", "by_name", lambda name: _answer(floor_app.by_name, name))
app.add_url_rule("/users/by-age", "by_age", lambda: _answer(floor_app.by_age))
app.add_url_rule("/users", "create_user", lambda: _answer(floor_app.create_user), methods=["POST"])
app.add_url_rule("/users/bulk", "create_users", lambda: _answer(floor_app.create_users), methods=["POST"])
