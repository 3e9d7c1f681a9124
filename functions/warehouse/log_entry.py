"""A line the server prints on stdout -> the LogEntry Cloud Logging makes of it on Cloud
Run, and the Terraform sink's filter over entries.

Cloud Run turns a JSON line into a jsonPayload entry, lifting the special fields
(severity, httpRequest, logging.googleapis.com/{insertId,labels,trace,spanId,
trace_sampled,sourceLocation,operation}, time/timestamp) out of the payload; any other
line becomes a textPayload entry. The BigQuery export lowercases payload field names
and replaces characters a column name cannot hold."""
from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime

from functions.warehouse import PROJECT
from shared import APP_NAME

SERVICE = "bucketeye"
LOG_NAME = f"projects/{PROJECT}/logs/run.googleapis.com%2Fstdout"
RESOURCE = {"type": "cloud_run_revision",
            "labels": {"service_name": SERVICE, "revision_name": f"{SERVICE}-00001-loc", "location": "local",
                       "project_id": PROJECT, "configuration_name": SERVICE}}

_LIFTED = {
    "logging.googleapis.com/insertId": "insertId",
    "logging.googleapis.com/labels": "labels",
    "logging.googleapis.com/operation": "operation",
    "logging.googleapis.com/sourceLocation": "sourceLocation",
    "logging.googleapis.com/spanId": "spanId",
    "logging.googleapis.com/trace": "trace",
    "logging.googleapis.com/trace_sampled": "traceSampled",
    "httpRequest": "httpRequest",
}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_from_line(line: str, *, written: datetime, instance_id: str) -> dict:
    entry = {"logName": LOG_NAME, "resource": RESOURCE, "timestamp": iso(written),
             "labels": {"instanceId": instance_id}, "insertId": secrets.token_hex(8), "severity": "DEFAULT"}
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        entry["textPayload"] = line.rstrip("\r\n")
        return entry
    payload = dict(record)
    if isinstance(payload.get("severity"), str):
        entry["severity"] = payload.pop("severity").upper()
    moment = _timestamp(payload.pop("time", None) or payload.pop("timestamp", None))
    if moment:
        entry["timestamp"] = moment
    for field, target in _LIFTED.items():
        if field not in payload:
            continue
        value = payload.pop(field)
        if target == "labels" and isinstance(value, dict):
            entry["labels"] = {**entry["labels"], **{str(k): str(v) for k, v in value.items()}}
        elif value not in (None, "", {}):
            entry[target] = value
    entry["jsonPayload"] = column_names(payload)
    return entry


def _timestamp(value) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return iso(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def column_name(name: str) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", str(name).lower())
    return "_" + name if not name or name[0].isdigit() else name


def column_names(value):
    """Payload field names as BigQuery columns: lowercase, [a-z0-9_] only."""
    if isinstance(value, dict):
        return {column_name(k): column_names(v) for k, v in value.items()}
    if isinstance(value, list):
        return [column_names(v) for v in value]
    return value


def kept_by_sink(entry: dict) -> bool:
    """The Terraform sink's filter (infra/main.tf local.results_filter)."""
    payload = entry.get("jsonPayload")
    return (entry.get("resource", {}).get("type") == "cloud_run_revision"
            and entry["resource"].get("labels", {}).get("service_name") == SERVICE
            and entry.get("logName") == LOG_NAME
            and isinstance(payload, dict) and payload.get("app") == APP_NAME)
