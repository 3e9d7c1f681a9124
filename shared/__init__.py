"""bucketeye's engine: fetch, decode, preprocess, classify, and record results."""

APP_NAME = "bucketeye"  # constant tag in every result record; the log sink filters on it
SCHEMA_VERSION = 1
