"""Running the stack in the foreground: start with a status line, stop on Ctrl-C or
SIGTERM (in order, once), notice when a part dies."""
from __future__ import annotations

import signal
import time
from contextlib import contextmanager

from functions.console.errors import CommandError
from functions.console.ui import console
from functions.local.stack import Stack


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextmanager
def sigterm_interrupts():
    """Inside: SIGTERM and SIGINT raise KeyboardInterrupt, so both stop the stack cleanly
    (SIGINT explicitly too: a shell starting us in the background may have ignored it)."""
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def start(stack: Stack) -> None:
    with console.status("starting the local stack") as status:
        stack.start(status=lambda text: status.update(text))


def stop(stack: Stack) -> None:
    """Stop every part; a second Ctrl-C or SIGTERM meanwhile is ignored, not half-obeyed."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with console.status("stopping the local stack"):
            stack.stop()
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


def wait_until_stopped(stack: Stack) -> None:
    """Until Ctrl-C/SIGTERM (KeyboardInterrupt reaches the caller) or a part dies (CommandError)."""
    while True:
        failure = stack.failure()
        if failure:
            raise CommandError(failure)
        time.sleep(0.5)
