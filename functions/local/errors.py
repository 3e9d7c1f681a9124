"""The one exception the local commands raise for problems the user can fix: a message,
an exit code, never a traceback."""
from __future__ import annotations

EXIT_FAILED, EXIT_USAGE = 1, 2


class LocalError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def not_running() -> LocalError:
    return LocalError("the local stack is not running: start it with `python main.py up` "
                      "(in another terminal), or run `python main.py demo`")
