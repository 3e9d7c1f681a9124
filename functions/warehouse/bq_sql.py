"""BigQuery SQL -> DuckDB SQL, for the views in infra/sql and for `python main.py query`.

sqlglot parses the BigQuery dialect and writes DuckDB's. On top of its translation,
two local facts:
- the local warehouse is one schema, so `project.dataset.table` names and
  dataset-qualified routines (`bucketeye.classify(uri)`) lose their qualifiers;
- BigQuery's `UNNEST(...) WITH OFFSET` counts from 0, DuckDB's `WITH ORDINALITY`
  from 1, so the offset is shifted back.
Terraform templatefile() variables ${name} are filled in before parsing.
"""
from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

_TEMPLATE = re.compile(r"(?<!\$)\$\{\s*(\w+)\s*\}")


class SqlTranslationError(ValueError):
    """The SQL is not BigQuery SQL that can run locally; the message says where."""


def fill_template(text: str, variables: dict[str, str]) -> str:
    def value(match):
        name = match.group(1)
        if name not in variables:
            raise KeyError(f"template variable ${{{name}}} has no local value")
        return variables[name]
    return _TEMPLATE.sub(value, text).replace("$${", "${")


def to_duckdb(sql: str) -> str:
    """One or more BigQuery statements in DuckDB's dialect (statements joined by ';')."""
    try:
        trees = [tree for tree in sqlglot.parse(sql, read="bigquery") if tree is not None]
        local = [tree.transform(_localise) for tree in trees]
        return ";\n".join(tree.sql(dialect="duckdb") for tree in local)
    except SqlglotError as exc:
        raise SqlTranslationError(_first_line(exc)) from None


def _localise(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
        for part in ("catalog", "db"):
            node.set(part, None)
        return node
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func) and _is_name(node.this):
        return node.expression  # bucketeye.classify(uri) -> classify(uri)
    if isinstance(node, exp.Anonymous) and isinstance(node.this, exp.Identifier) and "." in node.name:
        node.set("this", exp.to_identifier(node.name.rsplit(".", 1)[-1]))  # `p.d.classify`(uri)
        return node
    if isinstance(node, exp.Unnest) and node.args.get("offset"):
        return _zero_based_unnest(node)
    return node


def _is_name(node: exp.Expression) -> bool:
    """A bare or dotted identifier (a dataset or project.dataset qualifier)."""
    if isinstance(node, (exp.Identifier, exp.Column)):
        return True
    return isinstance(node, exp.Dot) and _is_name(node.this) and _is_name(node.expression)


def _zero_based_unnest(node: exp.Unnest) -> exp.Expression:
    """UNNEST(a) AS x WITH OFFSET AS i -> (SELECT x, o - 1 AS i FROM UNNEST(a) WITH ORDINALITY AS u(x, o)) AS u."""
    offset = node.args["offset"]
    offset_name = offset.name if isinstance(offset, exp.Identifier) else "offset"
    alias = node.args.get("alias")
    columns = alias.columns if alias is not None and alias.columns else [exp.to_identifier("value")]
    ordinal = exp.to_identifier(f"_{offset_name}_ordinal")
    inner = exp.Unnest(expressions=node.expressions,
                       alias=exp.TableAlias(this=exp.to_identifier("_unnested"), columns=list(columns)),
                       offset=ordinal)
    select = exp.select(*(exp.column(c.name) for c in columns),
                        exp.alias_(exp.Sub(this=exp.column(ordinal.name), expression=exp.Literal.number(1)),
                                   offset_name)).from_(inner)
    subquery = exp.Subquery(this=select, alias=exp.TableAlias(this=exp.to_identifier(f"_unnest_{offset_name}")))
    # Comments inside the rewritten clause (e.g. after its offset name) stay in the SQL.
    subquery.add_comments([text for part in node.walk() for text in part.comments or []])
    return subquery


def _first_line(exc: SqlglotError) -> str:
    errors = getattr(exc, "errors", None)
    if errors:  # a ParseError: say what was expected and where, without the token dump
        first = errors[0]
        description = re.sub(r"<Token token_type: [^,]+, text: ([^,]*),.*?>", r"'\1'", first.get("description", ""))
        return f"{description} (line {first.get('line')}, column {first.get('col')})"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
