"""One realtime-js WebSocket: its channels, their joins and leaves, heartbeats, access tokens,
and the changes each channel's bindings receive from the feed (``web/feed.py``).

Runs on the worker's event loop (a native handler, ``web/native.py``); what blocks (the key
check, the feed's start) goes through ``call``. Messages are handled one after another, in the
order they came; a channel's changes are sent by one task per distinct (tables, where, select)
of its bindings, every send under one lock.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from urllib.parse import parse_qs

from tiddly import jsonio
from tiddly.errors import ApiError, BadQuery, Unsupported
from tiddly.web import feed, guard
from tiddly.web.realtime import bindings as binding_rules
from tiddly.web.realtime import phoenix
from tiddly.web.realtime.phoenix import Message

log = logging.getLogger("tiddly")

IDLE_S = 60          # nothing from the client this long (realtime-js beats every 25 s): it is gone
MAX_CHANNELS = 100   # joined at once on one socket
MAX_BINDINGS = 100   # postgres_changes bindings of all its channels: each is a feed listener
MAX_FRAME = 1_000_000
TOPIC_PREFIX = "realtime:"
INTERNAL = "an internal error occurred; it has been logged"
NOT_SERVED = ("Tiddly's Realtime serves postgres_changes only: Broadcast and Presence are not supported "
              "(docs/postgrest.md)")


class Channel:
    """A joined topic: who joined it, its bindings, the tasks sending their changes."""

    def __init__(self, topic: str, join_ref: str | None, principal, bindings: list):
        self.topic, self.join_ref, self.principal, self.bindings = topic, join_ref, principal, bindings
        self.subscriptions: list[tuple] = []  # (the feed's subscription, the bindings it serves)
        self.tasks: list[asyncio.Task] = []

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for subscription, _ in self.subscriptions:
            subscription.close()
        self.tasks, self.subscriptions = [], []


class Shared:
    """What the sockets of one worker share: each change's data, encoded once for all of them
    (the feed hands every listener that sees the same columns the same Event)."""

    KEPT = 512

    def __init__(self):
        self.recent: collections.OrderedDict = collections.OrderedDict()

    def data(self, event, spec, select):
        key = (id(event), select)
        hit = self.recent.get(key)
        if hit is not None and hit[0] is event:
            return hit[1]
        encoded = jsonio.encoded(binding_rules.change_data(event, spec, select))
        self.recent[key] = (event, encoded)  # the event kept with it: its id is not reused meanwhile
        if len(self.recent) > self.KEPT:
            self.recent.popitem(last=False)
        return encoded


class Socket:
    def __init__(self, app, scope: dict, receive, send, call, shared: Shared):
        self.app, self.gateway, self.shared = app, app.extensions["tiddly"], shared
        self.scope, self.receive, self._send, self.call = scope, receive, send, call
        query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        self.vsn = query.get("vsn", phoenix.DEFAULT_VERSION)
        self.apikey = query.get("apikey")
        self.headers = dict(scope.get("headers") or [])
        self.channels: dict[str, Channel] = {}
        self.lock = asyncio.Lock()
        self.ids = itertools.count(1)
        self.open = True

    # -- the connection -------------------------------------------------------------------

    async def run(self) -> None:
        if (await self.receive())["type"] != "websocket.connect":
            return
        origin = self.headers.get(b"origin")
        if origin is not None and not guard.origin_allowed(self.gateway.config, origin.decode("latin-1")):
            await self._send({"type": "websocket.close", "code": 1008})  # before accepting: a 403
            return
        protocols = self.scope.get("subprotocols") or ()
        await self._send({"type": "websocket.accept", "subprotocol": "phoenix" if "phoenix" in protocols else None})
        if self.vsn not in phoenix.VERSIONS:
            await self.close(1008, f"vsn is one of {', '.join(phoenix.VERSIONS)}")
            return
        try:
            await self._serve()
        finally:
            self.open = False
            for channel in self.channels.values():
                channel.stop()

    async def _serve(self) -> None:
        while self.open:
            try:
                async with asyncio.timeout(IDLE_S):  # a timer, not a task per message as wait_for
                    message = await self.receive()
            except TimeoutError:
                await self.close(1000, f"nothing received in {IDLE_S} s (send a heartbeat)")
                return
            if message["type"] != "websocket.receive":
                return
            text, frame = message.get("text"), message.get("bytes")
            if len(text if text is not None else frame or b"") > MAX_FRAME:
                await self.close(1009, f"a message is at most {MAX_FRAME} bytes")
                return
            try:
                await self.handle(phoenix.decode(text, self.vsn) if text is not None else phoenix.decode_binary(frame))
            except phoenix.BadMessage as exc:
                await self.close(1007, str(exc))
                return
            except Exception:  # noqa: BLE001 (a bug: logged; the client hears no more than that)
                log.exception("realtime socket failed")
                await self.close(1011, INTERNAL)
                return

    async def push(self, message: Message) -> None:
        if not self.open:
            return
        text = phoenix.encode(message, self.vsn)
        async with self.lock:
            try:
                await self._send({"type": "websocket.send", "text": text})
            except Exception:  # noqa: BLE001 (the client went away; the receive loop ends it)
                self.open = False

    async def close(self, code: int, reason: str) -> None:
        async with self.lock:
            try:
                await self._send({"type": "websocket.close", "code": code, "reason": reason[:120]})
            except Exception:  # noqa: BLE001 (already gone)
                pass
        self.open = False

    # -- messages ---------------------------------------------------------------------------

    async def handle(self, message: Message) -> None:
        if message.topic == phoenix.SOCKET_TOPIC:
            status = "ok" if message.event == phoenix.HEARTBEAT else "error"
            response = {} if status == "ok" else {"reason": f"topic 'phoenix' takes heartbeats, not {message.event!r}"}
            await self.push(phoenix.reply(message, status, response))
        elif message.event == phoenix.JOIN:
            await self.join(message)
        elif message.topic not in self.channels:
            await self.push(phoenix.reply(message, "error", {"reason": "unmatched topic"}))
        elif message.event == phoenix.LEAVE:
            self.channels.pop(message.topic).stop()
            await self.push(phoenix.reply(message, "ok", {}))
        elif message.event == "access_token":
            await self.access_token(self.channels[message.topic], message)
        else:  # broadcast, presence, or an event of the application's own
            channel = self.channels[message.topic]
            await self.push(phoenix.reply(message, "error", {"reason": f"{message.event!r}: {NOT_SERVED}"}))
            # A broadcast sent without ack waits for no reply: a system message says it was not sent.
            await self.push(self._system(channel, "error", f"{message.event!r} was not sent. {NOT_SERVED}",
                                         extension=message.event))

    async def join(self, message: Message) -> None:
        old = self.channels.pop(message.topic, None)
        if old is not None:  # a join again replaces the channel, as Phoenix's does
            old.stop()
            await self.push(Message(old.topic, phoenix.CLOSE, {}, None, old.join_ref))
        try:
            channel = await self._joined(message)
        except ApiError as exc:
            await self.push(phoenix.reply(message, "error", {"reason": exc.message}))
            return
        except Exception:  # noqa: BLE001 (a bug: logged, answered without its text)
            log.exception("realtime join of %s failed", message.topic)
            await self.push(phoenix.reply(message, "error", {"reason": INTERNAL}))
            return
        self.channels[message.topic] = channel
        await self.push(phoenix.reply(message, "ok", {"postgres_changes": [b.echo for b in channel.bindings]}))
        self._start(channel)
        if channel.bindings:
            await self.push(self._system(channel, "ok", "Subscribed to PostgreSQL"))

    async def _joined(self, message: Message) -> Channel:
        if not message.topic.startswith(TOPIC_PREFIX) or message.topic == TOPIC_PREFIX:
            raise BadQuery(f"a channel's topic is '{TOPIC_PREFIX}<name>'")
        if len(self.channels) >= MAX_CHANNELS:
            raise BadQuery(f"one socket joins at most {MAX_CHANNELS} channels")
        payload = message.payload if isinstance(message.payload, dict) else {}
        config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
        unserved = _unserved(config)
        if unserved:
            raise Unsupported(f"{unserved}: {NOT_SERVED}")
        principal = await self._principal(payload.get("access_token"))
        view = self.gateway.view(principal)
        found = binding_rules.read(config, view, principal, self.gateway.config, lambda: next(self.ids))
        if not found:
            raise Unsupported(f"this channel listens to no postgres_changes. {NOT_SERVED}")
        if sum(len(c.bindings) for c in self.channels.values()) + len(found) > MAX_BINDINGS:
            raise BadQuery(f"one socket's channels hold at most {MAX_BINDINGS} postgres_changes bindings")
        channel = Channel(message.topic, message.join_ref, principal, found)
        await self._subscribe(channel)
        return channel

    async def _principal(self, token):
        """The caller: the join's access_token, else the socket's apikey, else an Authorization header."""
        if isinstance(token, str) and token:
            return await feed.authenticate(self.app, self.call, token)
        if self.apikey:
            return await feed.authenticate(self.app, self.call, self.apikey)
        return await feed.authenticate(self.app, self.call, list(self.headers.items()))

    async def _subscribe(self, channel: Channel) -> None:
        """One feed subscription per distinct (tables, where, select), opened now: its access is checked
        and it receives every change from here on, before the join is answered."""
        groups: dict[str, list] = {}
        for binding in channel.bindings:
            groups.setdefault(repr((binding.tables, binding.where, binding.select)), []).append(binding)
        try:
            for members in groups.values():
                subscription = await feed.open_listener(self.app, self.call, channel.principal,
                                                        list(members[0].tables), members[0].where)
                channel.subscriptions.append((subscription, members))
        except BaseException:
            channel.stop()
            raise

    def _start(self, channel: Channel) -> None:
        loop = asyncio.get_running_loop()
        channel.tasks = [loop.create_task(self._relay(channel, subscription, members))
                         for subscription, members in channel.subscriptions]

    async def _relay(self, channel: Channel, subscription, members: list) -> None:
        try:
            await self._relay_changes(channel, subscription, members)
        except Exception:  # noqa: BLE001 (a bug: logged, and the channel ends saying so)
            log.exception("realtime relay of %s failed", channel.topic)
            if self.open and self.channels.get(channel.topic) is channel:
                await self._end(channel, INTERNAL)

    async def _relay_changes(self, channel: Channel, subscription, members: list) -> None:
        view = self.gateway.view(channel.principal)
        specs = {name: view.tables[name] for name in members[0].tables if name in view.tables}
        while self.open:
            item = await subscription.next()
            if item is None:
                break
            if item == "tick":
                continue
            for event in item:
                ids = [b.id for b in members if b.wants(event.op)]
                spec = specs.get(event.table)
                if ids and spec is not None:
                    payload = {"ids": ids, "data": self.shared.data(event, spec, members[0].select)}
                    await self.push(Message(channel.topic, "postgres_changes", payload, None, channel.join_ref))
        if self.open and self.channels.get(channel.topic) is channel:
            await self._end(channel, "the feed ended: the key was revoked, or the client fell too far behind")

    async def _end(self, channel: Channel, why: str) -> None:
        """Close a channel from the server's side, saying why first (realtime-js shows a
        ``system`` error, then the channel is CLOSED: no rejoin with a key that cannot read)."""
        self.channels.pop(channel.topic, None)
        await self.push(self._system(channel, "error", why))
        await self.push(Message(channel.topic, phoenix.CLOSE, {}, None, channel.join_ref))
        channel.stop()

    async def access_token(self, channel: Channel, message: Message) -> None:
        """A new token for a joined channel: checked now; the channel goes on as the new caller,
        or ends when that caller may not read what it listens to."""
        token = message.payload.get("access_token") if isinstance(message.payload, dict) else None
        try:
            principal = await self._principal(token)
            if principal == channel.principal:
                return
            fresh = Channel(channel.topic, channel.join_ref, principal, channel.bindings)
            await self._subscribe(fresh)
        except ApiError as exc:
            await self._end(channel, exc.message)
            return
        channel.stop()
        self.channels[channel.topic] = fresh
        self._start(fresh)

    def _system(self, channel: Channel, status: str, text: str, extension: str = "postgres_changes") -> Message:
        payload = {"extension": extension, "status": status, "message": text,
                   "channel": channel.topic[len(TOPIC_PREFIX):]}
        return Message(channel.topic, "system", payload, None, channel.join_ref)


def _unserved(config: dict) -> str | None:
    """What a join asks for that is not served: Presence, or a Broadcast setting."""
    presence = config.get("presence")
    if isinstance(presence, dict) and presence.get("enabled"):
        return "this channel has a presence listener or presence.enabled"
    broadcast = config.get("broadcast")
    if isinstance(broadcast, dict) and any(broadcast.get(k) for k in ("self", "ack", "replay")):
        return "this channel sets broadcast options"
    return None
