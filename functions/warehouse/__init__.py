"""The local BigQuery dataset: the log sink's table and infra/sql's views in one DuckDB
file, the sink that appends the server's result lines to it as Cloud Logging would, and
BigQuery SQL translated for it. Workstation tooling: the local stack, backfill, reports
and dataset export read and write it; the service images leave it out."""

PROJECT = "local"  # the project id the emulators, the log entries and the warehouse use
