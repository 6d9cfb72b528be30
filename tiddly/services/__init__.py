"""The services: what a request does, whatever dialect asked for it.

The generic table service (``crud``), the JSON query language and its pages
(``query``, ``pages``, ``cursor``, ``include``, ``aggregate``), writes beyond one
row (``nested``, ``upsert``), streaming import and export (``export``),
``Idempotency-Key`` (``idempotency``), keys and login (``auth``) and the OpenAPI
document (``openapi``). Functions take a Session and never commit; nothing here
imports Flask.
"""
