"""PostgREST's grammar over Tiddly's services, at ``/rest/v1`` (``TIDDLY_POSTGREST_PATH``).

grammar.py reads the query string and headers, plan.py turns them into the typed
operations every way in shares (services/plan.py), which the app's executor runs;
render.py answers in PostgREST's shape, routes.py mounts it all as a blueprint;
openapi.py describes it (Swagger 2.0, as PostgREST's root does). What is supported and what is not: docs/postgrest.md.
"""
from tiddly.web.postgrest.routes import install

__all__ = ["install"]
