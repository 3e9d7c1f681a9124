"""The one exception the workstation commands raise for problems the user can fix: a
message, an exit code, never a traceback."""
from __future__ import annotations

EXIT_FAILED, EXIT_USAGE = 1, 2


class CommandError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def run_command(handler, args) -> int:
    """Run a workstation command's handler: a problem the user can fix becomes one line on
    stderr and its exit code; Ctrl-C exits 130."""
    from rich.markup import escape

    from functions.console.ui import errors
    try:
        return handler(args)
    except CommandError as exc:
        errors.print("[red]bucketeye:[/] " + escape(exc.message), soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130

