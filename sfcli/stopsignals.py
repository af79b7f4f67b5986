"""Ctrl-C and SIGTERM during training: a flag the loop reads at its next safe point."""

from __future__ import annotations

import signal

from sfcli.errors import Interrupted

STOPS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Turn SIGINT/SIGTERM into a flag the loop checks after each step; with `message`, into
    Interrupted at once (the final test has no state to save)."""

    def __init__(self, message: str | None = None):
        self.signum, self.message = 0, message

    def __enter__(self):
        self.previous = {s: signal.signal(s, self._handle) for s in STOPS}
        return self

    def _handle(self, signum, frame):
        self.signum = signum
        if self.message:
            raise Interrupted(self.message, signum)

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
