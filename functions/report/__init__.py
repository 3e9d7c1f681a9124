"""`python main.py report` (an HTML report of the results table, self-contained: inline
CSS, charts as inline PNG, nothing fetched) and `python main.py duplicates` (images stored
more than once), from the local warehouse (DuckDB) or a BigQuery dataset.

One job per module: sources (run SQL on DuckDB or BigQuery), queries (the SQL),
collect (the report's numbers), charts (matplotlib, Agg), page (the HTML), cli.
"""
