"""PostgREST's query string and headers, read into plain values. Pure: no Flask, no SQL.

``parse_params`` reads the query string into a tree of ``Node``s, one per table:
the root and each embedded resource of ``select=``, with its columns, filters
(``col=op.value``, ``or=(...)``), ``order``, ``limit`` and ``offset``. Names are
only read here, never checked: ``plan.py`` resolves the tree into a typed read plan,
checking every name and value against the registry.
The headers (``Prefer``, ``Range``, ``Accept``) have their own small readers.

Every malformed piece is a ``PostgrestError`` in PostgREST's words (PGRST100 for a
query string that does not parse, PGRST127 for what Tiddly does not implement).
Nesting (``or`` inside ``and``, embeds inside embeds) is capped, so no input recurses deep.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

# PostgREST's operators (plan.py maps each to the engine's, services/query.py OPERATORS)
OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "in", "is", "isdistinct", "match", "imatch",
             "cs", "cd", "ov", "sl", "sr", "nxr", "nxl", "adj", "fts", "plfts", "phfts", "wfts")
MODIFIABLE = ("eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch")  # op(any) / op(all)
SEARCHES = ("fts", "plfts", "phfts", "wfts")  # op(configuration): a text search configuration
IS_VALUES = ("null", "not_null", "true", "false", "unknown")
EMBEDDABLE_KEYS = ("order", "limit", "offset", "or", "and")
PREFER_VALUES = {
    "return": ("minimal", "headers-only", "representation"),
    "count": ("exact", "planned", "estimated"),
    "resolution": ("merge-duplicates", "ignore-duplicates"),
    "missing": ("default", "null"),
    "handling": ("lenient", "strict"),
    "tx": ("commit", "rollback"),
}
_RANGE = re.compile(r"^\s*(\d{1,18})-(\d{0,18})\s*$")
_BRACKETED = re.compile(r"\[[^\[\]]*\]$")


class PostgrestError(Exception):
    """An answer in PostgREST's words: HTTP status, code, message, details, hint."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None,
                 hint: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.hint, self.headers = details, hint, headers or {}


def parse_error(what: str, text: str, details: str) -> PostgrestError:
    return PostgrestError(400, "PGRST100", f'"failed to parse {what} ({text[:200]})"', details)


def not_implemented(details: str) -> PostgrestError:
    return PostgrestError(400, "PGRST127", "Feature not implemented", details,
                          "docs/postgrest.md lists what Tiddly's PostgREST dialect supports")


# -- the tree ------------------------------------------------------------------------

@dataclass(frozen=True)
class Filter:
    column: str
    op: str
    value: Any           # text; a list of texts for in and any/all; the is-value for is
    negate: bool = False
    modifier: str | None = None  # "any" / "all"; a text search configuration for fts and its kin


@dataclass(frozen=True)
class Logic:
    op: str              # "and" / "or"
    items: tuple         # Filter or Logic
    negate: bool = False


@dataclass(frozen=True)
class Order:
    column: str
    descending: bool = False
    nulls: str | None = None  # "first" / "last"; None: the client named no placement
    embed: str | None = None  # rel(col): the key of the to-one embed whose column orders the rows


AGGREGATES = ("sum", "avg", "count", "max", "min")


@dataclass(frozen=True)
class Field:
    """One item of ``select=`` that is no embed: ``alias:column->path::cast.aggregate()::cast``.
    ``column`` is "*" for ``count()``; ``path`` holds ("->" or "->>", key) steps into a JSON column."""
    key: str
    column: str
    path: tuple[tuple[str, str], ...] = ()
    cast: str | None = None
    aggregate: str | None = None
    aggregate_cast: str | None = None

    @property
    def plain(self) -> bool:
        """Just a column, under its own name."""
        return self.key == self.column and not self.path and not self.cast and not self.aggregate


@dataclass
class Node:
    """One table of the request: the root, or an embedded resource of ``select=``."""
    star: bool = False
    fields: list[Field] = field(default_factory=list)
    embeds: list["Embed"] = field(default_factory=list)
    conditions: list = field(default_factory=list)  # Filter / Logic, ANDed
    order: list["Order"] | None = None
    limit: int | None = None
    offset: int | None = None

    def embed(self, key: str) -> "Embed | None":
        return next((e for e in self.embeds if e.key == key), None)


@dataclass
class Embed:
    key: str             # the output key: the alias, else the relation's name
    relation: str
    hint: str | None
    inner: bool
    node: Node
    exists: bool | None = None  # from ?rel=is.null / ?rel=not.is.null
    spread: bool = False        # ...rel(cols): its columns go into the parent row
    link: Any = None            # the registry's RelationSpec it follows, once plan.resolve found it

    @property
    def renamed(self) -> bool:
        return self.key != self.relation or self.spread


@dataclass
class Params:
    root: Node
    columns: list[str] | None = None
    on_conflict: str | None = None


# -- quoting and splitting -------------------------------------------------------------

def split(text: str, sep: str = ",") -> list[str]:
    """``text`` cut at ``sep`` outside double quotes (backslash escapes), parentheses and braces."""
    if '"' not in text and "(" not in text and "{" not in text:
        return text.split(sep)
    parts, depth, start = [], 0, 0
    for i, ch in _unquoted(text):
        if ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
            if depth < 0:
                raise parse_error("parameter", text, f"unexpected {ch!r} at position {i}")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise parse_error("parameter", text, "an unclosed parenthesis or brace")
    parts.append(text[start:])
    return parts


def _unquoted(text: str):
    """(index, character) of each character of ``text`` outside double quotes; inside them a
    backslash escapes the next character. An unclosed quote is a PGRST100."""
    quoted = escaped = False
    for i, ch in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        else:
            yield i, ch
    if quoted:
        raise parse_error("parameter", text, "an unclosed quote")


def unquote(text: str, what: str = "name") -> str:
    """A name or value: surrounding spaces dropped; a "quoted" one unescaped."""
    text = text.strip()
    if text.startswith('"'):
        if len(text) < 2 or not text.endswith('"'):
            raise parse_error(what, text, "a quoted name or value must end with a quote")
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    if not text:
        raise parse_error(what, text, f"an empty {what}")
    return text


def _outside_quotes(text: str, ch: str) -> int:
    """The index of the first ``ch`` outside double quotes, or -1."""
    return next((i for i, c in _unquoted(text) if c == ch), -1)


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _quoted_prefix(text: str, what: str) -> tuple[str, str]:
    """``"a name"rest`` -> ("a name", "rest")."""
    match = _QUOTED.match(text)
    if match is None:
        raise parse_error(what, text, "an unclosed quote")
    return unquote(match.group(), what), text[match.end():]


# -- the query string --------------------------------------------------------------------

def parse_params(items: Iterable[tuple[str, str]], max_depth: int) -> Params:
    """The whole query string (its (key, value) pairs in order) as a tree of nodes."""
    pairs = list(items)
    select = next((value for key, value in pairs if key == "select"), None)
    params = Params(parse_select(select, max_depth) if select else Node(star=True))
    for key, value in pairs:
        if key == "select":
            continue
        if key == "columns":
            params.columns = [unquote(name, "columns") for name in split(value)]
        elif key == "on_conflict":
            params.on_conflict = ",".join(unquote(name, "on_conflict") for name in split(value))
        else:
            _parse_param(params.root, key, value, max_depth)
    return params


def _parse_param(root: Node, key: str, value: str, max_depth: int) -> None:
    path = [key] if "." not in key and '"' not in key else [unquote(p, "key") for p in split(key, ".")]
    last = path[-1]
    if last in ("or", "and"):
        negate = len(path) > 1 and path[-2] == "not"
        node = _node_at(root, path[:-2] if negate else path[:-1])
        node.conditions.append(parse_logic(last, value, negate, max_depth))
    elif last in EMBEDDABLE_KEYS:
        node = _node_at(root, path[:-1])
        if last == "order":
            node.order = parse_order(value)
        else:
            setattr(node, last, _count(last, value))
    else:
        node = _node_at(root, path[:-1])
        # title[0]=ilike.*a*&title[1]=ilike.*b*: PostgREST reads a filter's key up to a bracket,
        # so both filter title (react-admin's search of several words sends them so)
        last = _BRACKETED.sub("", last) if last.endswith("]") and not last.startswith('"') else last
        embed = node.embed(last)
        condition = parse_filter(last, value)
        if embed is None:
            node.conditions.append(condition)
        elif condition.op == "is" and condition.value in ("null", "not_null"):
            # ?rel=is.null: parents without a matching related row; ?rel=not.is.null: with one.
            embed.exists = (condition.value == "not_null") != condition.negate
        else:
            raise PostgrestError(400, "PGRST120", f"Bad operator on the '{last}' embedded resource",
                                 "Only is null or not is null filters are allowed on embedded resources")


def _node_at(root: Node, path: list[str]) -> Node:
    node = root
    for key in path:
        embed = node.embed(key)
        if embed is None:
            raise not_embedded(key)
        node = embed.node
    return node


def not_embedded(key: str) -> PostgrestError:
    return PostgrestError(400, "PGRST108", f"'{key}' is not an embedded resource in this request",
                          hint=f"Verify that '{key}' is included in the 'select' query parameter.")


def _count(name: str, text: str) -> int:
    if not re.fullmatch(r"-?\d{1,18}", text.strip()):
        raise parse_error(name, text, f"'{name}' takes a whole number")
    number = int(text)
    if number < 0:
        detail = "Limit should be greater than or equal to zero." if name == "limit" else \
            "Offset should be greater than or equal to zero."
        raise PostgrestError(416, "PGRST103", "Requested range not satisfiable", detail)
    return number


# -- filters -------------------------------------------------------------------------------

def parse_filter(column: str, text: str, in_logic: bool = False) -> Filter:
    """``[not.]op[(modifier)].value`` on ``column``."""
    negate = text.startswith("not.")
    body = text[4:] if negate else text
    op, dot, value = body.partition(".")
    if not dot:
        raise parse_error("filter", text, "expecting an operator and a value: op.value, e.g. eq.5")
    modifier = None
    if op.endswith(")") and "(" in op:
        op, _, modifier = op[:-1].partition("(")
    if op not in OPERATORS:
        raise parse_error("filter", text, f"unknown operator {op[:40]!r}; Tiddly runs {', '.join(OPERATORS)}")
    if op in SEARCHES:
        if modifier is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]{0,62}", modifier):
            raise parse_error("filter", text, "a text search configuration is a name, e.g. fts(english)")
        return Filter(column, op, value, negate, modifier)
    if op == "in":
        return Filter(column, op, parse_list(value, "(", ")", text), negate)
    if op == "is":
        if modifier is not None or value.lower() not in IS_VALUES:
            raise parse_error("filter", text, "'is' takes null, not_null, true, false or unknown")
        return Filter(column, op, value.lower(), negate)
    if modifier is not None:
        if modifier not in ("any", "all") or op not in MODIFIABLE:
            raise parse_error("filter", text, f"unknown modifier ({modifier[:20]}); {', '.join(MODIFIABLE)} "
                                              "take (any) or (all), fts, plfts, phfts and wfts a configuration")
        return Filter(column, op, parse_list(value, "{", "}", text), negate, modifier)
    if in_logic and value.startswith('"'):
        value = unquote(value, "filter")
    return Filter(column, op, value, negate)


def parse_list(text: str, opening: str, closing: str, whole: str) -> list[str]:
    inner = text.strip()
    if not (inner.startswith(opening) and inner.endswith(closing)):
        raise parse_error("filter", whole, f"expecting a list {opening}a,b,...{closing}")
    if not inner[1:-1].strip():
        return []  # in.(): no value, so no row (not.in.(): every row), as postgrest-js's .in(col, []) means
    items = split(inner[1:-1])
    return [unquote(item, "filter") if item.strip().startswith('"') else item for item in items]


def parse_logic(op: str, text: str, negate: bool, max_depth: int, depth: int = 0) -> Logic:
    """``(a.eq.1,b.gt.2,not.and(c.lt.3,d.is.null))`` for ``or`` / ``and``."""
    if depth >= max_depth:
        raise parse_error("logic tree", text, f"and/or nest deeper than {max_depth} levels")
    inner = text.strip()
    if not (inner.startswith("(") and inner.endswith(")")):
        raise parse_error("logic tree", text, f"expecting {op}=(condition,condition,...)")
    items = []
    for item in split(inner[1:-1]):
        item = item.strip()
        match = re.match(r"^(not\.)?(and|or)(\(.*\))$", item, re.DOTALL)
        if match:
            items.append(parse_logic(match.group(2), match.group(3), bool(match.group(1)), max_depth, depth + 1))
            continue
        if item.startswith('"'):
            column, rest = _quoted_prefix(item, "logic tree")
            if not rest.startswith("."):
                raise parse_error("logic tree", text, f"cannot read the condition {item[:60]!r}")
            condition = rest[1:]
        else:
            column, dot, condition = item.partition(".")
            if not dot or not column.strip() or "(" in column or ")" in column:
                raise parse_error("logic tree", text, f"expecting column.operator.value, got {item[:60]!r}")
        items.append(parse_filter(column.strip(), condition, in_logic=True))
    return Logic(op, tuple(items), negate)


# -- order and select ----------------------------------------------------------------------

def parse_order(text: str) -> list[Order]:
    """``a.desc.nullslast,b,stores(name).desc`` -> its terms."""
    terms = []
    for term in split(text):
        term = term.strip()
        embed = None
        opening = _outside_quotes(term, "(")
        if opening >= 0:  # rel(col): a to-one embed's column
            closing = _outside_quotes(term, ")")
            if opening == 0 or closing < opening or term[closing + 1:closing + 2] not in ("", "."):
                raise parse_error("order", text, f"cannot read {term[:60]!r}")
            embed, term = unquote(term[:opening], "order"), term[opening + 1:closing] + term[closing + 1:]
        if term.startswith('"'):
            name, modifiers = _quoted_prefix(term, "order")
            if modifiers and not modifiers.startswith("."):
                raise parse_error("order", text, f"cannot read {term[:60]!r}")
            parts = modifiers.split(".")[1:]
        else:
            name, *parts = term.split(".")
            if "(" in name or ")" in name:
                raise parse_error("order", text, f"cannot read {term[:60]!r}")
        direction = parts.pop(0) if parts and parts[0] in ("asc", "desc") else "asc"
        nulls = parts.pop(0) if parts and parts[0] in ("nullsfirst", "nullslast") else None
        if parts or not name.strip():
            raise parse_error("order", text, "expecting [relation(]column[)][.asc|.desc][.nullsfirst|.nullslast]")
        terms.append(Order(name.strip(), direction == "desc", nulls[5:] if nulls else None, embed))
    return terms


def parse_select(text: str, max_depth: int, depth: int = 0) -> Node:
    """``*,alias:col,rel!inner(col,nested(*))`` -> a Node and its embeds."""
    if depth >= max_depth:
        raise parse_error("select parameter", text, f"embeds nest deeper than {max_depth} levels")
    node = Node()
    for item in split(text):
        item = item.strip()
        if not item:
            if text.strip() == "" and depth:
                return node  # an empty embed, rel(): filters only
            raise parse_error("select parameter", text, "an empty item")
        if item == "*":
            node.star = True
        elif item.startswith(".."):  # ...rel(cols): the related row's columns lifted into this one
            spread = item.lstrip(".")
            opening = _outside_quotes(spread, "(")
            if not spread.endswith(")") or opening <= 0 or _alias(spread[:opening])[0] is not None:
                raise parse_error("select parameter", text, "a spread is ...relation(columns), with no alias")
            node.embeds.append(replace(_embed(spread, text, max_depth, depth), spread=True))
        elif item.endswith(")") and _outside_quotes(item, "(") > 0 and not _AGGREGATE.search(item):
            node.embeds.append(_embed(item, text, max_depth, depth))
        else:
            node.fields.append(_field(item, text))
    return node


# ``count()`` or ``.sum()`` (any aggregate) at the end of a select item, before an optional cast
_AGGREGATE = re.compile(r"(?:^|[:.])(?:" + "|".join(AGGREGATES) + r")\(\)(?:::[A-Za-z0-9_ ]+)?$")
_CAST = re.compile(r"[A-Za-z_][A-Za-z0-9_ ]*")


def _alias(item: str) -> tuple[str | None, str]:
    colon = _outside_quotes(item, ":")
    if colon <= 0 or item[colon + 1:colon + 2] == ":":
        return None, item
    return unquote(item[:colon], "alias"), item[colon + 1:]


def _field(item: str, text: str) -> Field:
    """``alias:column->key->>key::cast``, ``alias:column.sum()::cast`` or ``alias:count()::cast``."""
    alias, rest = _alias(item)
    rest = rest.strip()
    aggregate = aggregate_cast = None
    match = re.search(r"(?:^|\.)(" + "|".join(AGGREGATES) + r")\(\)(?:::(.+))?$", rest)
    if match and _outside_quotes(rest[:match.start()] + ".", ".") >= 0:
        aggregate, aggregate_cast = match.group(1), _cast_name(match.group(2), text)
        rest = rest[:match.start()] or "*"
        if rest == "*" and aggregate != "count":
            raise parse_error("select parameter", text, f"{aggregate}() takes a column: column.{aggregate}()")
    cast = None
    colons = _outside_quotes(rest, ":")
    if colons >= 0:
        if rest[colons:colons + 2] != "::":
            raise parse_error("select parameter", text, f"cannot read {item[:60]!r}")
        rest, cast = rest[:colons], _cast_name(rest[colons + 2:], text)
    name, path = json_path(rest, text)
    if _outside_quotes(name, ".") >= 0 or _outside_quotes(name, "(") >= 0 or _outside_quotes(name, ")") >= 0:
        raise parse_error("select parameter", text, f"cannot read {item[:60]!r}")
    name = unquote(name, "select parameter") if name != "*" else name
    if name == "*" and (path or cast or aggregate != "count"):
        raise parse_error("select parameter", text, f"cannot read {item[:60]!r}")
    key = alias or aggregate or (path[-1][1] if path else name)
    return Field(key, name, path, cast, aggregate, aggregate_cast)


def _cast_name(text: str | None, whole: str) -> str | None:
    if text is None:
        return None
    if not _CAST.fullmatch(text.strip()):
        raise parse_error("select parameter", whole, f"cannot read the cast {text[:40]!r}")
    return text.strip().lower()


def json_path(text: str, whole: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``col->a->>b`` -> ("col", (("->", "a"), ("->>", "b"))); keys may be quoted."""
    arrow = _outside_quotes(text, "-")
    while arrow >= 0 and text[arrow + 1:arrow + 2] != ">":
        following = _outside_quotes(text[arrow + 1:], "-")
        arrow = -1 if following < 0 else arrow + 1 + following
    if arrow < 0:
        return text, ()
    name, rest, path = text[:arrow], text[arrow:], []
    while rest:
        step = "->>" if rest.startswith("->>") else "->" if rest.startswith("->") else None
        if step is None:
            raise parse_error("select parameter", whole, f"cannot read the JSON path {text[:60]!r}")
        rest = rest[len(step):]
        if rest.startswith('"'):
            key, rest = _quoted_prefix(rest, "JSON path")
        else:
            end = rest.find("->")
            key, rest = (rest, "") if end < 0 else (rest[:end], rest[end:])
            key = key.strip()
        if not key or (step == "->>" and rest):
            raise parse_error("select parameter", whole, f"cannot read the JSON path {text[:60]!r}")
        path.append((step, key))
    if not name.strip():
        raise parse_error("select parameter", whole, f"cannot read the JSON path {text[:60]!r}")
    return name.strip(), tuple(path)


def _embed(item: str, text: str, max_depth: int, depth: int) -> "Embed":
    opening = _outside_quotes(item, "(")
    head, inner = item[:opening], item[opening + 1:-1]
    alias, head = _alias(head)
    parts = split(head, "!")
    name = unquote(parts[0], "select parameter")
    if _outside_quotes(parts[0], ".") >= 0 or name == "count":
        raise parse_error("select parameter", text, f"cannot read {item[:60]!r}")
    hint, inner_join = None, False
    for param in parts[1:]:
        param = param.strip()
        if param in ("inner", "left"):
            inner_join = param == "inner"
        elif hint is None and param:
            hint = unquote(param, "hint")
        else:
            raise parse_error("select parameter", text, f"cannot read {head[:60]!r}")
    return Embed(alias or name, name, hint, inner_join, parse_select(inner, max_depth, depth + 1))


# -- headers --------------------------------------------------------------------------------

def parse_prefer(values: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """``Prefer`` headers (each a comma-joined list) -> (the preferences Tiddly reads, the rest)."""
    known, other = {}, []
    for header in values:
        for item in header.split(","):
            item = item.strip()
            if not item:
                continue
            name, _, value = item.partition("=")
            name, value = name.strip().lower(), value.strip()
            if value in PREFER_VALUES.get(name, ()) or (name == "max-affected" and value.isdigit()):
                known[name] = value
            else:
                other.append(item)
    return known, other


def parse_range(header: str | None) -> tuple[int, int | None] | None:
    """``Range: 0-9`` -> (0, 9); ``10-`` -> (10, None). Anything else is no range, as in PostgREST."""
    if not header:
        return None
    match = _RANGE.match(header)
    if not match:
        return None
    low, high = int(match.group(1)), int(match.group(2)) if match.group(2) else None
    if high is not None and low > high:
        raise PostgrestError(416, "PGRST103", "Requested range not satisfiable",
                             "The lower boundary must be lower than or equal to the upper boundary "
                             "in the Range header.")
    return low, high


@dataclass(frozen=True)
class Media:
    kind: str                     # "json", "object" (one row), "csv", "geojson" or "plan"
    strip_nulls: bool = False
    plan_format: str = "text"     # a plan: "json" or "text"
    plan_options: frozenset[str] = frozenset()  # a plan: EXPLAIN's options
    plan_for: str = "application/json"          # a plan: the media type it is the plan of


JSON_MEDIA = Media("json")
_MEDIA = {
    "*/*": "json", "application/*": "json", "application/json": "json",
    "application/vnd.pgrst.array+json": "json", "application/vnd.pgrst.array": "json",
    "application/vnd.pgrst.object+json": "object", "application/vnd.pgrst.object": "object",
    "text/csv": "csv", "text/*": "csv", "application/geo+json": "geojson",
    "application/vnd.pgrst.plan": "plan", "application/vnd.pgrst.plan+text": "plan",
    "application/vnd.pgrst.plan+json": "plan",
}
PLAN_OPTIONS = ("analyze", "verbose", "settings", "buffers", "wal")


def parse_accept(header: str | None) -> Media:
    """The first media type of ``Accept`` that Tiddly answers (a 406 PGRST107 when none)."""
    if not header or header == "application/json":
        return JSON_MEDIA
    for item in header.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        options = dict(p.partition("=")[::2] for p in params)
        if options.get("q", "1").strip() in ("0", "0.0", "0.00", "0.000"):
            continue
        kind = _MEDIA.get(media.lower())
        if kind == "plan":
            return _plan_media(media.lower(), options, header)
        if kind is not None:
            return Media(kind, options.get("nulls", "").strip() == "stripped" and kind in ("json", "object"))
    raise PostgrestError(406, "PGRST107", f"None of these media types are available: {header[:200]}")


def _plan_media(media: str, options: dict[str, str], header: str) -> Media:
    """``application/vnd.pgrst.plan+json; for="application/json"; options=analyze|verbose``."""
    wanted = frozenset(filter(None, options.get("options", "").strip().strip('"').split("|")))
    target = options.get("for", "application/json").strip().strip('"')
    if not wanted <= set(PLAN_OPTIONS) or target not in ("application/json", "text/csv",
                                                          "application/vnd.pgrst.object+json"):
        raise PostgrestError(406, "PGRST107", f"None of these media types are available: {header[:200]}",
                             f"a plan's options are {'|'.join(PLAN_OPTIONS)}")
    return Media("plan", plan_format="json" if media.endswith("+json") else "text", plan_options=wanted,
                 plan_for=target)
