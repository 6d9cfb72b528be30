"""The functions a database can call, as its own catalog describes them.

What PostgREST serves at ``/rpc/<name>``: on PostgreSQL the functions of the exposed schema
(``pg_proc``; aggregates, window functions and procedures are not called that way); on MariaDB
its stored functions (one value) and procedures (the rows their SELECTs return); SQLite stores
no functions (the ones it calls belong to the program that opened it), so it lists none.

Volatility says what a call may do. PostgreSQL enforces it: a STABLE or IMMUTABLE function
cannot write. MariaDB only records what the routine declares (``NO SQL``, ``READS SQL DATA``,
``MODIFIES SQL DATA``, ``DETERMINISTIC``) and does not enforce it, so a routine that declares
neither reads nor writes is taken as volatile, and a caller that must not write should still
call it in a READ ONLY transaction (MariaDB refuses a write there).
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

VOLATILITIES = ("immutable", "stable", "volatile")


@dataclass(frozen=True)
class Parameter:
    name: str | None          # None: an unnamed parameter (PostgreSQL allows them)
    type: str                 # as the database names it: "text", "bigint", "uuid[]", "users"
    default: str | None = None  # the default's SQL, as the database shows it; None: required
    mode: str = "in"          # "in", "inout" or "variadic"
    relation: str | None = None  # a table or view of the schema whose row this parameter is

    @property
    def required(self) -> bool:
        return self.default is None and self.mode != "variadic"


@dataclass(frozen=True)
class Function:
    name: str
    parameters: tuple[Parameter, ...]
    returns: str                  # the result's type: "integer", "void", "users", "record"
    returns_set: bool             # rows (SETOF, RETURNS TABLE, a procedure's result set), not one value
    volatility: str               # "immutable", "stable" or "volatile"
    returns_relation: str | None = None  # the table or view of the schema whose rows it returns
    columns: tuple[tuple[str, str], ...] = ()  # (name, type) of each OUT / TABLE column
    kind: str = "function"        # "function", or "procedure" (MariaDB)
    identity: str = ""            # what tells overloads apart: "name(integer,text)"
    rows: float = 0               # the rows it declares it returns (ROWS n; PostgreSQL): 1 is one row

    @property
    def writes(self) -> bool:
        """Whether a call may change data (the database's own word for it; see the module)."""
        return self.volatility == "volatile"


def callable_functions(conn: Connection, schema: str | None = None) -> list[Function]:
    """The functions of ``schema`` (the connection's default when None), by name then identity."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        found = _postgresql(conn, schema)
    elif dialect in ("mysql", "mariadb"):
        found = _mysql(conn, schema)
    else:
        found = []
    return sorted(found, key=lambda f: (f.name, f.identity))


# -- PostgreSQL ---------------------------------------------------------------------------------

_PG_FUNCTIONS = text("""
    SELECT p.oid, p.proname, p.oid::regprocedure::text AS identity, p.proretset, p.provolatile, p.prorows,
           format_type(p.prorettype, NULL) AS returns, returned.relname AS returns_relation,
           p.proargnames, p.proargmodes,
           ARRAY(SELECT format_type(t, NULL) FROM unnest(COALESCE(p.proallargtypes, p.proargtypes::oid[]))
                 WITH ORDINALITY AS a(t, i) ORDER BY i) AS argument_types,
           ARRAY(SELECT COALESCE(c.relname, '') FROM unnest(COALESCE(p.proallargtypes, p.proargtypes::oid[]))
                 WITH ORDINALITY AS a(t, i) JOIN pg_type ty ON ty.oid = a.t
                 LEFT JOIN pg_class c ON c.oid = ty.typrelid AND c.relnamespace = p.pronamespace
                 ORDER BY i) AS argument_relations
    FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace
    JOIN pg_type rt ON rt.oid = p.prorettype
    LEFT JOIN pg_class returned ON returned.oid = rt.typrelid AND returned.relnamespace = p.pronamespace
    WHERE n.nspname = COALESCE(:schema, current_schema()) AND p.prokind = 'f'
""")
# Each parameter's default as SQL text, by the function's specific name (proname_oid) and position.
_PG_DEFAULTS = text("""
    SELECT specific_name, ordinal_position, parameter_default FROM information_schema.parameters
    WHERE specific_schema = COALESCE(:schema, current_schema()) AND parameter_default IS NOT NULL
""")
_PG_VOLATILITY = {"i": "immutable", "s": "stable", "v": "volatile"}
_PG_MODES = {"i": "in", "b": "inout", "v": "variadic"}  # o (out) and t (table) are result columns


def _postgresql(conn: Connection, schema: str | None) -> list[Function]:
    defaults = {(name, position): default for name, position, default
                in conn.execute(_PG_DEFAULTS, {"schema": schema})}
    functions = []
    for row in conn.execute(_PG_FUNCTIONS, {"schema": schema}).mappings():
        types = row["argument_types"]
        names = row["proargnames"] or [""] * len(types)
        modes = row["proargmodes"] or ["i"] * len(types)
        relations = row["argument_relations"]
        specific = f"{row['proname']}_{row['oid']}"
        parameters, columns = [], []
        for position, (name, mode, type_name, relation) in enumerate(zip(names, modes, types, relations), 1):
            if mode in _PG_MODES:
                parameters.append(Parameter(name or None, type_name, defaults.get((specific, position)),
                                            _PG_MODES[mode], relation or None))
            if mode in ("o", "b", "t"):
                columns.append((name, type_name))
        functions.append(Function(
            name=row["proname"], parameters=tuple(parameters), returns=row["returns"],
            returns_set=row["proretset"], volatility=_PG_VOLATILITY[row["provolatile"]],
            returns_relation=row["returns_relation"], columns=tuple(columns), identity=row["identity"],
            rows=row["prorows"]))
    return functions


# -- MariaDB ------------------------------------------------------------------------------------

def _mysql(conn: Connection, schema: str | None) -> list[Function]:
    database = schema or conn.execute(text("SELECT DATABASE()")).scalar()
    parameters: dict[tuple[str, str], list] = {}
    for name, kind, position, mode, parameter, type_name in conn.execute(text(
            "SELECT SPECIFIC_NAME, ROUTINE_TYPE, ORDINAL_POSITION, PARAMETER_MODE, PARAMETER_NAME, DTD_IDENTIFIER "
            "FROM information_schema.PARAMETERS WHERE SPECIFIC_SCHEMA = :schema ORDER BY ORDINAL_POSITION"),
            {"schema": database}):
        if position:  # position 0 is a function's result
            parameters.setdefault((name, kind), []).append((mode, parameter, type_name))
    functions = []
    for name, kind, returns, deterministic, access in conn.execute(text(
            "SELECT ROUTINE_NAME, ROUTINE_TYPE, DTD_IDENTIFIER, IS_DETERMINISTIC, SQL_DATA_ACCESS "
            "FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = :schema"), {"schema": database}):
        listed = parameters.get((name, kind), [])
        inputs = tuple(Parameter(parameter, type_name, None, mode.lower())
                       for mode, parameter, type_name in listed if mode in ("IN", "INOUT"))
        outputs = tuple((parameter, type_name) for mode, parameter, type_name in listed if mode in ("OUT", "INOUT"))
        procedure = kind == "PROCEDURE"
        functions.append(Function(
            name=name, parameters=inputs, returns="record" if procedure else returns,
            returns_set=procedure, volatility=_mysql_volatility(deterministic, access), columns=outputs,
            kind=kind.lower(), identity=f"{name}({','.join(p.type for p in inputs)})"))
    return functions


def _mysql_volatility(deterministic: str, access: str) -> str:
    """What the routine declares: NO SQL and DETERMINISTIC is immutable, READS SQL DATA or NO SQL
    stable; CONTAINS SQL (the default, which says nothing) and MODIFIES SQL DATA volatile."""
    if access == "NO SQL" and deterministic == "YES":
        return "immutable"
    if access in ("NO SQL", "READS SQL DATA"):
        return "stable"
    return "volatile"
