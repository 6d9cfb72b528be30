"""Rows as a GeoJSON FeatureCollection (``Accept: application/geo+json``), as PostgREST answers
with PostGIS: each row a Feature whose geometry is the row's geometry column and whose
properties are its other columns.

No database here has to have PostGIS: the geometry column is the first one whose values are
geometries as the databases hand them over, WKT or EWKT text (``SRID=4326;POINT(1 2)``), WKB
bytes (MariaDB's spatial types, after their 4-byte SRID) or hex EWKB (PostGIS's, when the
driver does not know the type). Pure: no Flask, no SQL.
"""
from __future__ import annotations

import re
import struct
from typing import Any

_TYPES = ("POINT", "LINESTRING", "POLYGON", "MULTIPOINT", "MULTILINESTRING", "MULTIPOLYGON", "GEOMETRYCOLLECTION")
_NAMES = {"POINT": "Point", "LINESTRING": "LineString", "POLYGON": "Polygon", "MULTIPOINT": "MultiPoint",
          "MULTILINESTRING": "MultiLineString", "MULTIPOLYGON": "MultiPolygon",
          "GEOMETRYCOLLECTION": "GeometryCollection"}
_WKT = re.compile(r"\s*(?:SRID=\d+;)?\s*(" + "|".join(_TYPES) + r")\b", re.IGNORECASE)
_TOKEN = re.compile(r"\s*([A-Za-z]+|\(|\)|,|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2}){9,}")
MAX_DEPTH = 8  # nesting of a collection of collections


class NotGeometry(ValueError):
    pass


def feature_collection(rows: list[dict]) -> dict | None:
    """The rows as a FeatureCollection; None when no column holds geometries."""
    column = _geometry_column(rows)
    if column is None:
        return None
    features = [{"type": "Feature", "geometry": geometry(row[column]) if row[column] is not None else None,
                 "properties": {name: value for name, value in row.items() if name != column}} for row in rows]
    return {"type": "FeatureCollection", "features": features}


def _geometry_column(rows: list[dict]) -> str | None:
    names = list(rows[0]) if rows else []
    for name in names:
        values = [row[name] for row in rows if row[name] is not None]
        if values and all(_is_geometry(value) for value in values):
            return name
    return None


def _is_geometry(value: Any) -> bool:
    try:
        geometry(value)
    except (NotGeometry, struct.error, IndexError):
        return False
    return True


def geometry(value: Any) -> dict:
    """A geometry value (WKT, EWKT, WKB, hex EWKB) as a GeoJSON geometry."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        try:
            return _whole_wkb(data)
        except (NotGeometry, struct.error, IndexError):
            return _whole_wkb(data[4:])  # MariaDB's and MySQL's own: the SRID, then the WKB
    if isinstance(value, str):
        if _WKT.match(value):
            return _wkt(value)
        if _HEX.fullmatch(value):
            return _whole_wkb(bytes.fromhex(value))
    raise NotGeometry(value)


def _whole_wkb(data: bytes) -> dict:
    found, end = _wkb(data, 0, 0)
    if end != len(data):
        raise NotGeometry("bytes after the geometry")
    return found


# -- WKT ---------------------------------------------------------------------------------------

def _wkt(text: str) -> dict:
    text = text.split(";", 1)[1] if text.lstrip().upper().startswith("SRID=") else text
    tokens = [match.group(1) for match in _TOKEN.finditer(text)]
    if "".join(tokens).replace(" ", "") != re.sub(r"\s+", "", text):
        raise NotGeometry(text)
    found, at = _wkt_geometry(tokens, 0, 0)
    if at != len(tokens):
        raise NotGeometry(text)
    return found


def _wkt_geometry(tokens: list[str], at: int, depth: int) -> tuple[dict, int]:
    if depth > MAX_DEPTH or at >= len(tokens) or tokens[at].upper() not in _NAMES:
        raise NotGeometry("expected a geometry")
    kind, at = tokens[at].upper(), at + 1
    while at < len(tokens) and tokens[at].upper() in ("Z", "M", "ZM"):
        at += 1
    if at < len(tokens) and tokens[at].upper() == "EMPTY":
        empty = {"type": _NAMES[kind], "geometries" if kind == "GEOMETRYCOLLECTION" else "coordinates": []}
        return empty, at + 1
    if kind == "GEOMETRYCOLLECTION":
        parts, at = _wkt_list(tokens, at, lambda t, i: _wkt_geometry(t, i, depth + 1))
        return {"type": "GeometryCollection", "geometries": parts}, at
    levels = {"POINT": 0, "LINESTRING": 1, "MULTIPOINT": 1, "POLYGON": 2, "MULTILINESTRING": 2, "MULTIPOLYGON": 3}
    coordinates, at = _wkt_coordinates(tokens, at, levels[kind], kind == "MULTIPOINT")
    return {"type": _NAMES[kind], "coordinates": coordinates}, at


def _wkt_coordinates(tokens: list[str], at: int, level: int, loose: bool = False):
    """``(x y, x y)`` nested ``level`` deep; a point's ``(x y)``. MULTIPOINT takes both
    ``(1 2, 3 4)`` and ``((1 2), (3 4))``."""
    if level == 0:
        if tokens[at] != "(":
            raise NotGeometry("expected (")
        point, at = _position(tokens, at + 1)
        return point, _expect(tokens, at, ")")
    if level == 1 and loose and tokens[at] == "(" and at + 1 < len(tokens) and tokens[at + 1] == "(":
        return _wkt_list(tokens, at, lambda t, i: _wkt_coordinates(t, i, 0))
    if level == 1:
        return _wkt_list(tokens, at, _position)
    return _wkt_list(tokens, at, lambda t, i: _wkt_coordinates(t, i, level - 1))


def _wkt_list(tokens: list[str], at: int, item) -> tuple[list, int]:
    at = _expect(tokens, at, "(")
    found = []
    while True:
        value, at = item(tokens, at)
        found.append(value)
        if at < len(tokens) and tokens[at] == ",":
            at += 1
            continue
        return found, _expect(tokens, at, ")")


def _position(tokens: list[str], at: int) -> tuple[list[float], int]:
    numbers = []
    while at < len(tokens) and tokens[at] not in (",", ")", "("):
        numbers.append(float(tokens[at]))
        at += 1
    if not 2 <= len(numbers) <= 4:
        raise NotGeometry("a position has 2 to 4 numbers")
    return numbers[:3], at


def _expect(tokens: list[str], at: int, token: str) -> int:
    if at >= len(tokens) or tokens[at] != token:
        raise NotGeometry(f"expected {token}")
    return at + 1


# -- WKB ---------------------------------------------------------------------------------------

def _wkb(data: bytes, at: int, depth: int) -> tuple[dict, int]:
    if depth > MAX_DEPTH:
        raise NotGeometry("nested too deep")
    order = "<" if data[at] == 1 else ">"
    (code,) = struct.unpack_from(order + "I", data, at + 1)
    at += 5
    has_z, has_m = bool(code & 0x80000000), bool(code & 0x40000000)  # EWKB flags
    if code & 0x20000000:
        at += 4  # an EWKB SRID
    code &= 0x0FFFFFFF
    has_z, has_m = has_z or code // 1000 in (1, 3), has_m or code // 1000 in (2, 3)  # ISO WKB
    kind, size = code % 1000, 2 + has_z + has_m
    if not 1 <= kind <= 7:
        raise NotGeometry("unknown WKB type")

    def position(i: int) -> tuple[list[float], int]:
        values = struct.unpack_from(order + "d" * size, data, i)
        return list(values[:3 if has_z else 2]), i + 8 * size

    def counted(i: int, read) -> tuple[list, int]:
        (count,) = struct.unpack_from(order + "I", data, i)
        if count > len(data):
            raise NotGeometry("a count past the data")
        i += 4
        found = []
        for _ in range(count):
            value, i = read(i)
            found.append(value)
        return found, i

    name = _NAMES[_TYPES[kind - 1]]
    if kind == 1:
        point, at = position(at)
        return {"type": name, "coordinates": point}, at
    if kind == 2:
        line, at = counted(at, position)
        return {"type": name, "coordinates": line}, at
    if kind == 3:
        rings, at = counted(at, lambda i: counted(i, position))
        return {"type": name, "coordinates": rings}, at
    parts, at = counted(at, lambda i: _wkb(data, i, depth + 1))
    if kind == 7:
        return {"type": name, "geometries": parts}, at
    return {"type": name, "coordinates": [part["coordinates"] for part in parts]}, at
