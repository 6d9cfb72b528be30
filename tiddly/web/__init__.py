"""The HTTP edge beside the app factory (``tiddly.tiddly``): who is asking and may they
(``guard``). Modules here turn requests into service calls; only the edge imports Flask."""
