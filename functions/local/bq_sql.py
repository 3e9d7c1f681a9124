"""BigQuery SQL -> DuckDB SQL, for the views in infra/sql and for `python main.py query`:
the few spots where the dialects differ on the SQL this project writes.

- Terraform templatefile() variables ${name} are filled in;
- `project.dataset.table` names (backticks) become the table's own name;
- FLOAT64 becomes DOUBLE (INT64, BOOL, STRING and QUALIFY already work in DuckDB);
- CROSS JOIN UNNEST(list) AS x WITH OFFSET AS i becomes a LATERAL join with ordinality.
Quoted strings and comments are never changed."""
from __future__ import annotations

import re

_SEGMENTS = re.compile(r"('(?:[^'\\]|\\.|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|--[^\n]*|/\*.*?\*/)", re.S)
_TEMPLATE = re.compile(r"(?<!\$)\$\{\s*(\w+)\s*\}")
_OFFSET = re.compile(r"\bUNNEST\s*\(([^()]*)\)\s+(?:AS\s+)?(\w+)\s+WITH\s+OFFSET(?:\s+(?:AS\s+)?(\w+))?", re.I)
_TYPES = {re.compile(r"\bFLOAT64\b", re.I): "DOUBLE"}


def fill_template(text: str, variables: dict[str, str]) -> str:
    def value(match):
        name = match.group(1)
        if name not in variables:
            raise KeyError(f"template variable ${{{name}}} has no local value")
        return variables[name]
    return _TEMPLATE.sub(value, text).replace("$${", "${")


def to_duckdb(sql: str) -> str:
    parts = _SEGMENTS.split(sql)
    out = []
    for index, part in enumerate(parts):
        if index % 2:  # a quoted string, quoted name or comment
            if part.startswith("`") and "." in part:
                part = '"' + part[1:-1].rsplit(".", 1)[-1] + '"'
            out.append(part)
            continue
        for pattern, replacement in _TYPES.items():
            part = pattern.sub(replacement, part)
        part = _OFFSET.sub(_lateral, part)
        out.append(part)
    return "".join(out)


def _lateral(match) -> str:
    array, alias, offset = match.group(1), match.group(2), match.group(3) or "offset"
    return (f"LATERAL (SELECT {alias}, {offset} - 1 AS {offset} "
            f"FROM UNNEST({array}) WITH ORDINALITY AS _unnest({alias}, {offset}))")
