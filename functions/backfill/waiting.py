"""--wait: after publishing, watch the results land (a progress bar over the images sent,
with rate and ETA), asking the results store about the images still missing."""
from __future__ import annotations

import time

from functions.backfill import progress


def wait_for_results(results, model_id: str, sent: list[tuple[str, str]], *, timeout_s: float,
                     interval_s: float, failure=lambda: None) -> list[tuple[str, str]]:
    """Polls until every sent (uri, generation) has a result row; returns those still missing."""
    missing = set(sent)
    deadline = time.monotonic() + timeout_s
    with progress.bar("images") as bar:
        task = bar.add_task("classified", total=len(missing), status="")
        while missing:
            missing -= results.done(model_id, sorted(missing))
            bar.update(task, completed=len(sent) - len(missing))
            problem = failure()
            if not missing or problem or time.monotonic() >= deadline:
                break
            time.sleep(interval_s)
    return sorted(missing)
