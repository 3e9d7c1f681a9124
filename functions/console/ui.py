"""What the workstation commands print: rich consoles (stdout, stderr), progress bars and
tables of rows."""
from __future__ import annotations

import json
import sys
from datetime import datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

# Piped or captured output is not cut to 80 columns: SQL and tables stay whole and copyable.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
errors = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)


def progress() -> Progress:
    return Progress(TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def cell(value) -> Text:
    if value is None:
        return Text("NULL", style="dim")
    if isinstance(value, float):
        return Text(f"{value:.6g}")
    if isinstance(value, datetime):
        return Text(value.isoformat(sep=" ", timespec="milliseconds"))
    if isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
        return Text(text if len(text) <= 120 else text[:117] + "...")
    return Text(str(value))


def table(columns: list[str], rows: list[tuple], *, title: str | None = None) -> Table:
    view = Table(title=title, title_justify="left", header_style="bold")
    for name in columns:
        view.add_column(name, overflow="fold")
    for row in rows:
        view.add_row(*(cell(v) for v in row))
    return view

