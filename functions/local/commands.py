"""Local-stack commands for `python main.py` (up, upload, publish, query, results, ...)."""
from __future__ import annotations


def add_commands(sub) -> None:
    """Register this module's subcommands on the main parser's subparsers."""


def run(args) -> int:
    """Run a subcommand registered by add_commands; 2 (usage) for anything unknown."""
    return 2
