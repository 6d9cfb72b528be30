"""The HTTP edge beside the app factory (``tiddly.tiddly``): who is asking and may they
(``guard``), row ETags and conditional writes (``conditional``). Modules here turn requests
into service calls; only the edge imports Flask."""
