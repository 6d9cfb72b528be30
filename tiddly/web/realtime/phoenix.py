"""The Phoenix channel protocol's messages, as realtime-js speaks them. Pure: no I/O.

A message is ``(join_ref, ref, topic, event, payload)``. The socket's ``vsn`` query parameter
picks its text form: ``2.0.0`` (realtime-js's default) is the JSON array
``[join_ref, ref, topic, event, payload]``; ``1.0.0`` the JSON object
``{"topic", "event", "payload", "ref"}`` (no join_ref: version 1 has none). realtime-js's binary
frames (a broadcast's own encoding, ``decode_binary``) are read only far enough to answer them:
Broadcast is not served.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tiddly import jsonio
from tiddly.errors import BadJson

VERSIONS = ("1.0.0", "2.0.0")
DEFAULT_VERSION = "1.0.0"  # what a Phoenix server assumes when the client names none

JOIN, LEAVE, REPLY, ERROR, CLOSE = "phx_join", "phx_leave", "phx_reply", "phx_error", "phx_close"
HEARTBEAT, SOCKET_TOPIC = "heartbeat", "phoenix"
MAX_NAME = 255  # characters of a topic, an event, a ref (realtime-js's own bound on them)


class BadMessage(Exception):
    """A frame that is not a Phoenix channel message (the socket answers it and closes)."""


@dataclass(frozen=True)
class Message:
    topic: str
    event: str
    payload: Any
    ref: str | None = None
    join_ref: str | None = None


def decode(text: str | bytes, vsn: str) -> Message:
    """One frame's text as a message, or a BadMessage saying what is wrong with it."""
    try:
        value = jsonio.loads(text)
    except BadJson:
        raise BadMessage("a message is JSON text") from None
    if vsn == "2.0.0":
        if not isinstance(value, list) or len(value) != 5:
            raise BadMessage("with vsn=2.0.0 a message is [join_ref, ref, topic, event, payload]")
        join_ref, ref, topic, event, payload = value
    else:
        if not isinstance(value, dict):
            raise BadMessage('with vsn=1.0.0 a message is {"topic", "event", "payload", "ref"}')
        join_ref, ref, topic, event, payload = (value.get(k) for k in ("join_ref", "ref", "topic", "event", "payload"))
    if not isinstance(topic, str) or not isinstance(event, str):
        raise BadMessage("a message's topic and event are strings")
    message = Message(topic, event, payload if payload is not None else {}, _ref(ref), _ref(join_ref))
    if any(len(part or "") > MAX_NAME for part in (topic, event, message.ref, message.join_ref)):
        raise BadMessage(f"a message's topic, event, ref and join_ref are at most {MAX_NAME} characters")
    return message


_USER_BROADCAST_PUSH = 3  # realtime-js's kind byte for a broadcast it sends


def decode_binary(frame: bytes) -> Message:
    """A binary frame's topic and refs (realtime-js's broadcast push: a kind byte, five lengths
    and an encoding byte, then join_ref, ref, topic, event...), its payload left unread."""
    if len(frame) < 7 or frame[0] != _USER_BROADCAST_PUSH:
        raise BadMessage("the only binary frame realtime-js sends is a broadcast push")
    lengths, at = frame[1:4], 7
    parts = []
    for length in lengths:
        parts.append(frame[at:at + length].decode("utf-8", "replace"))
        at += length
    join_ref, ref, topic = parts
    return Message(topic, "broadcast", {}, ref or None, join_ref or None)


def _ref(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise BadMessage("a message's ref and join_ref are strings")


def encode(message: Message, vsn: str) -> str:
    if vsn == "2.0.0":
        value: Any = [message.join_ref, message.ref, message.topic, message.event, message.payload]
    else:
        value = {"topic": message.topic, "event": message.event, "payload": message.payload, "ref": message.ref}
    return jsonio.dumps(value).decode()


def reply(to: Message, status: str, response: dict) -> Message:
    """The answer to a push: ``phx_reply`` with its ref, ``{"status": "ok" | "error", "response"}``."""
    return Message(to.topic, REPLY, {"status": status, "response": response}, to.ref, to.join_ref)
