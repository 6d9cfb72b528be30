"""Supabase Realtime's ``postgres_changes`` over Tiddly's change feed: the WebSocket
supabase-js opens at ``/realtime/v1/websocket`` (beside ``/rest/v1``), so that
``supabase.channel('x').on('postgres_changes', {event, schema, table, filter}, handler)
.subscribe()`` works on every database Tiddly serves.

phoenix.py reads and writes the Phoenix channel protocol's messages (both of realtime-js's
serializers); bindings.py checks a join's bindings and shapes each change as realtime-js
expects it; socket.py runs one connection. Broadcast and Presence are not served: a join
that asks for them, and a broadcast or presence message, are answered so (docs/postgrest.md).
"""
from __future__ import annotations

from tiddly.web import native
from tiddly.web.realtime.socket import Shared, Socket

SUFFIX = "/realtime/v1/websocket"


def path_for(postgrest_path: str) -> str | None:
    """Where supabase-js looks for Realtime when its URL is the one /rest/v1 hangs from
    (None: the PostgREST dialect, and so Supabase's surface, is off)."""
    if not postgrest_path:
        return None
    path = postgrest_path.rstrip("/")
    return (path[:-len("/rest/v1")] if path.endswith("/rest/v1") else "") + SUFFIX


def install(app, gateway) -> None:
    path = path_for(gateway.config.postgrest_path)
    if path is None:
        return

    shared = Shared()  # one per worker: each worker builds its own app

    async def realtime(scope, receive, send, call) -> None:
        await Socket(app, scope, receive, send, call, shared).run()
    native.register(app, path, realtime, kinds=("websocket",))
