"""The one exception the workstation commands raise for problems the user can fix: a
message, an exit code, never a traceback."""
from __future__ import annotations

EXIT_FAILED, EXIT_USAGE = 1, 2


class CommandError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

