"""What the user watches: a rich progress bar over the listing (rate and ETA once the
background count knows the total), and the final summary."""
from __future__ import annotations

import threading

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from functions.backfill.checkpoint import Counts
from functions.console.ui import console


class RateColumn(TextColumn):
    def __init__(self, unit: str):
        super().__init__("")
        self.unit = unit

    def render(self, task):
        speed = task.finished_speed or task.speed
        return "" if speed is None else f"{speed:,.0f} {self.unit}/s"


def bar(unit: str = "objects") -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                    RateColumn(unit), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    TextColumn("{task.fields[status]}"), console=console, transient=False)


def status_text(counts: Counts, dry_run: bool) -> str:
    sent = "to send" if dry_run else "published"
    return (f"{counts.published:,} {sent} · {counts.skipped:,} done before · {counts.not_images:,} not images"
            + (f" · [red]{counts.failed:,} failed[/]" if counts.failed else ""))


class Counter:
    """Counts the objects still to list on a thread, so the bar gets a total (and an ETA)."""

    def __init__(self, count, on_total):
        self._stop = threading.Event()
        self._count = count
        self._on_total = on_total
        self._thread = threading.Thread(target=self._run, name="bucketeye-backfill-count", daemon=True)

    def start(self) -> Counter:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            listed, _ = self._count(stop=self._stop, on_page=lambda listed, images: None)
        except Exception:  # no total, no ETA: the backfill itself goes on
            return
        if not self._stop.is_set():
            self._on_total(listed)

    def stop(self) -> None:
        self._stop.set()


def summary(counts: Counts, *, dry_run: bool, title: str) -> Table:
    view = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    view.add_column(justify="left")
    view.add_column(justify="right")
    rows = [("listed", counts.listed), ("images", counts.images), ("not images (skipped)", counts.not_images),
            ("already classified (skipped)", counts.skipped),
            ("would be published" if dry_run else "published", counts.published),
            ("in messages", counts.messages), ("failed", counts.failed)]
    for name, value in rows:
        style = "red" if name == "failed" and value else None
        view.add_row(name, f"{value:,}", style=style)
    return view
