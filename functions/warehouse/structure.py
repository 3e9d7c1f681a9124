"""Table shapes as DuckDB json_transform structures, grown the way BigQuery grows a
log sink's table: a field's first type is its type forever, a new field adds a column.

A structure is a DuckDB type name ("VARCHAR", "DOUBLE", ...), a dict of named
structures (a STRUCT) or a one-element list (a LIST of that element). None means "not
known yet" (a null, an empty list or object): it adds nothing until a value shows up.
JSON numbers become DOUBLE, as Cloud Logging stores every JSON number as a double.
"""
from __future__ import annotations

import json

_BIGQUERY_TYPES = {"STRING": "VARCHAR", "FLOAT": "DOUBLE", "FLOAT64": "DOUBLE", "NUMERIC": "DOUBLE",
                   "BIGNUMERIC": "DOUBLE", "INTEGER": "BIGINT", "INT64": "BIGINT", "BOOLEAN": "BOOLEAN",
                   "BOOL": "BOOLEAN", "TIMESTAMP": "TIMESTAMP", "DATETIME": "TIMESTAMP", "DATE": "DATE",
                   "TIME": "TIME", "BYTES": "VARCHAR", "JSON": "JSON"}


def infer(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, (int, float)):
        return "DOUBLE"
    if isinstance(value, str):
        return "VARCHAR"
    if isinstance(value, dict):
        # One pass over the keys (growing it by merge() per key copied the dict each time:
        # quadratic, ~1 CPU-ms per result row in the sink).
        return _grow_fields({}, ((key, infer(item)) for key, item in value.items())) or None
    if isinstance(value, list):
        element = None
        for item in value:
            element = merge(element, infer(item))
        return None if element is None else [element]
    return "VARCHAR"


def merge(first, second):
    """first, grown by what second adds; where both know a field, first's type stays."""
    if first is None:
        return second
    if second is None:
        return first
    if isinstance(first, dict) and isinstance(second, dict):
        return _grow_fields(dict(first), second.items())
    if isinstance(first, list) and isinstance(second, list):
        return [merge(first[0], second[0])]
    return first


def _grow_fields(fields: dict, named) -> dict:
    """fields (changed in place), grown by (name, structure) pairs: a name already there
    in any case keeps its spelling and first type; an unknown (None) one adds nothing."""
    names = {name.lower(): name for name in fields}  # column names are case-insensitive
    for name, value in named:
        own = names.get(name.lower())
        if own is not None:
            fields[own] = merge(fields[own], value)
        elif value is not None:
            fields[name] = value
            names[name.lower()] = name
    return fields


def from_bigquery(fields: list[dict]) -> dict:
    """A BigQuery JSON schema (list of fields) -> structure."""
    structure = {}
    for field in fields:
        kind = field.get("type", "STRING").upper()
        if kind in ("RECORD", "STRUCT"):
            value = from_bigquery(field.get("fields", [])) or None
        else:
            value = _BIGQUERY_TYPES.get(kind, "VARCHAR")
        if value is not None and field.get("mode", "NULLABLE").upper() == "REPEATED":
            value = [value]
        if value is not None:
            structure[field["name"]] = value
    return structure


def _prune(structure):
    if isinstance(structure, dict):
        pruned = {k: p for k, v in structure.items() if (p := _prune(v)) is not None}
        return pruned or None
    if isinstance(structure, list):
        inner = _prune(structure[0])
        return None if inner is None else [inner]
    return structure


def render(structure) -> str:
    """The structure as json_transform's argument (empty structs dropped: DuckDB has none)."""
    return json.dumps(_prune(structure) or {})
