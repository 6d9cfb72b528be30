"""Tiddly's own API at ``/<table>``: its JSON query language (``language``), the dynamic
endpoint (``routes``) and its OpenAPI 3.1 document (``openapi``)."""
from tiddly.web.api.routes import (
    COLLECTION_VERBS,
    idempotent_request,
    ok,
    read_body,
    register,
    written,
)

__all__ = ["COLLECTION_VERBS", "idempotent_request", "ok", "read_body", "register", "written"]
