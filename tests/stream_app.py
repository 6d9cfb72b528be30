"""A test-only app factory with native handlers (tiddly/web/native.py), served by tiddly serve's
server layer (tiddly/cli/server.py) exactly as `tiddly serve` serves: used by
tests/test_server_streams.py and bench/streams.py, not shipped.

- ``GET /-/test-stream``: Server-Sent Events. On connect one ``hello`` event whose data is the
  row count of ``dual`` (read through ``call``, in a slot); then a ``: keep-alive`` comment every
  ``?every=`` seconds (default 5) until the client goes.
- ``/-/test-ws``: a WebSocket that answers each text message with the row count of ``dual``
  followed by the message.

    python tests/stream_app.py --database-url URL --port N [--workers 2] [--threads 4] [--server granian]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select  # noqa: E402

from tiddly import create_app  # noqa: E402
from tiddly.config import Config  # noqa: E402
from tiddly.web import native  # noqa: E402


def stream_app(config: Config):
    app = create_app(config)
    gateway = app.extensions["tiddly"]
    dual = gateway.registry.get("dual").table

    def count() -> int:
        with gateway.db.session() as session:
            return session.execute(select(func.count()).select_from(dual)).scalar_one()

    async def events(scope, receive, send, call):
        query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
        every = float(query.get("every", "5"))
        rows = await call(count)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": f"event: hello\ndata: {rows}\n\n".encode(),
                    "more_body": True})
        async def disconnected():
            while (await receive())["type"] != "http.disconnect":  # the (empty) body comes first
                pass

        gone = asyncio.ensure_future(disconnected())
        while True:
            done, _ = await asyncio.wait({gone}, timeout=every)
            if done:  # http.disconnect: the client went
                return
            try:
                await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
            except OSError:
                return

    async def echo(scope, receive, send, call):
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            rows = await call(count)
            await send({"type": "websocket.send", "text": f"{rows} {message.get('text')}"})

    native.register(app, "/-/test-stream", events)
    native.register(app, "/-/test-ws", echo, kinds=("websocket",))
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--server", default="granian")
    args = parser.parse_args()
    from tiddly.cli.serve import _limits
    from tiddly.cli.server import run

    config = Config.from_env(database_url=args.database_url)
    create_app(config).extensions["tiddly"].db.dispose()  # the tables, once, before the workers
    config = config.with_(create_tables=False)
    run(lambda: stream_app(config), "127.0.0.1", args.port, args.workers, args.threads, server=args.server,
        limits=_limits(config))


if __name__ == "__main__":
    main()
