"""The web page for people at ``/-/ui/`` (DESIGN.md section 9).

A server-rendered shell (templates/index.html) and a small hand-written
JavaScript module (static/*.js) that calls Tiddly's own JSON API with the
person's key in an ``Authorization`` header: the page is one more client of
the services, never a second implementation of them. The shell and its assets
hold no data, so they load without a key (guard.PUBLIC_BLUEPRINTS); every
data call needs one. Nothing is built and nothing is fetched from elsewhere.
"""
from __future__ import annotations

from flask import Blueprint, Flask, Response, redirect, render_template

# No inline script or style, nothing from another origin, no framing, no form posts:
# the page's own JavaScript talks to its own origin with fetch.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate (a cheap 304), so an upgrade never mixes old and new files
}

blueprint = Blueprint("ui", __name__, url_prefix="/-/ui", template_folder="templates",
                      static_folder="static", static_url_path="/static")


@blueprint.get("")
def page_without_slash() -> Response:
    return redirect("ui/", 308)  # relative: right behind a proxy that mounts Tiddly under a prefix


@blueprint.get("/")
def page() -> str:
    return render_template("tiddly_ui.html")


@blueprint.after_request
def add_security_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def register(app: Flask) -> None:
    app.register_blueprint(blueprint)
