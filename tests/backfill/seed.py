"""Result rows in a local warehouse, made the way the stack makes them: real result
records (shared/results.py) turned into log entries (functions/warehouse/log_entry.py) and
appended by the warehouse (functions/warehouse/store.py)."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from functions.warehouse.log_entry import entry_from_line
from functions.warehouse.store import Warehouse
from shared.errors import BucketeyeError
from shared.refs import ImageRef
from shared.results import Prediction, Result
from shared.storage import parse_gs_uri

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def record(uri: str, generation: str = "1", *, model_id: str = "m@1", error: str | None = None,
           label: str = "tabby", score: float = 0.9, md5: str = "", total_ms: float = 20.0, size: int = 1000,
           alternatives=(("tiger cat", 0.05),)) -> dict:
    target = parse_gs_uri(uri)
    name, _, version = model_id.partition("@")
    ref = ImageRef(trigger="pubsub", uri=uri, bucket=target.bucket, object=target.name, generation=generation,
                   size_bytes=size, content_type="image/jpeg")
    predictions = [] if error else [Prediction(label, 1, score)] + [Prediction(other, 2 + i, s)
                                                                   for i, (other, s) in enumerate(alternatives)]
    result = Result(ref=ref, model={"name": name, "version": version, "id": model_id}, predictions=predictions,
                    error=BucketeyeError(error) if error else None, timings_ms={"total": total_ms}, content_md5=md5)
    return result.to_record()


def seed(path: Path, records: list[dict], *, start: datetime = T0, step: timedelta = timedelta(minutes=1)) -> None:
    warehouse = Warehouse(Path(path))
    warehouse.setup()
    entries = []
    for i, rec in enumerate(records):
        line = json.dumps(dict(rec, message="seeded", severity="INFO" if rec["status"] == "ok" else "WARNING"))
        entry = entry_from_line(line, written=start + i * step, instance_id="seed")
        entry["receiveTimestamp"] = entry["timestamp"]
        entries.append(entry)
    warehouse.append(entries)
