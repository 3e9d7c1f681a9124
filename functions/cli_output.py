"""How `classify` shows results: JSON lines, or a readable table; progress on stderr."""
from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table

from shared.results import Result

PROGRESS_FROM = 8  # fewer files than this finish before a bar would help


class ResultPrinter:
    def __init__(self, *, json_lines: bool, total: int):
        self.json_lines = json_lines
        self.total = total
        self._out = Console(soft_wrap=True)
        self._progress = Progress(TextColumn("classifying"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                  console=Console(stderr=True), transient=True,
                                  disable=total < PROGRESS_FROM or not sys.stderr.isatty())
        self._task = None
        # Paths have no spaces to wrap at: fold them, or narrow output shows every file as "/dir/…".
        self._table = Table(Column("file", overflow="fold"), "status", "top label", "score", "top-k", "ms",
                            show_lines=False)

    def __enter__(self):
        self._progress.start()
        self._task = self._progress.add_task("classify", total=self.total, rate="")
        return self

    def add(self, result: Result) -> None:
        if self.json_lines:
            sys.stdout.write(json.dumps(result.to_record(), ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            self._table.add_row(*_row(result))
        task = self._progress.tasks[0]
        rate = f"{task.speed:.1f} img/s" if task.speed else ""
        self._progress.update(self._task, advance=1, rate=rate)

    def __exit__(self, *exc):
        self._progress.stop()
        if not self.json_lines:
            self._out.print(self._table)
        return False


def _row(result: Result) -> tuple[str, ...]:
    name = escape(result.ref.uri or result.ref.object)
    total = f"{result.timings_ms.get('total', 0):.0f}"
    if not result.ok:
        return (name, f"[red]{result.error.code}[/red]", escape(result.error.message), "", "", total)
    best = result.predictions or result.detections
    if not best:
        return (name, "ok", "(nothing above threshold)", "", "", total)
    others = escape(", ".join(f"{p.label} {p.score:.2f}" for p in best[1:]))
    return (name, "[green]ok[/green]", escape(best[0].label), f"{best[0].score:.3f}", others, total)
