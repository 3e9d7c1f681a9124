"""A warehouse with a realistic mix of results for the report tests: labels, errors (some
retryable), latencies that change over a day, a spread of scores, duplicates, and a label
that tries to inject markup."""
from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

from tests.backfill.seed import record, seed

EVIL = "<script>document.title='pwned'</script>"
LABELS = ["tabby", "golden retriever", "espresso", "tripod", "mountain bike", "rocket", "tiger cat", "lakeside",
          "$100 bill", EVIL]


def build(path: Path, n: int = 240) -> dict:
    rng = random.Random(9)
    records = []
    for i in range(n):
        uri = f"gs://photos/2026/{i:04d}.jpg"
        hour = i * 24 // n
        if i % 23 == 5:
            records.append(record(uri, str(i + 1), model_id="efficientnet_lite0@1",
                                  error=["corrupt_image", "fetch_failed", "unsupported_format"][i % 3]))
            continue
        label = LABELS[min(int(rng.expovariate(0.45)), len(LABELS) - 1)]
        score = min(0.99, max(0.05, rng.betavariate(4, 1.6)))
        total = 18 + 6 * (hour % 6) + rng.expovariate(1 / 8.0)
        md5 = f"md5-{i % 97}" if i >= 200 else f"md5-{i}"  # 200+ repeat earlier hashes: duplicates
        records.append(record(uri, str(i + 1), model_id="efficientnet_lite0@1", label=label, score=score,
                              md5=md5, total_ms=total, size=200_000 + i * 1000))
    seed(path, records, step=timedelta(minutes=6))
    return {"records": records, "evil": EVIL}
