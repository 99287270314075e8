"""A run of failures of one repeated task (a loop that reads or writes the database), kept
out of the way: growing pauses, and a log an operator can read during an outage.

Without it a loop that polls every second writes a traceback every second while the
database is away: megabytes an hour, the cause buried. A streak logs its first failure
with the traceback, later ones as a single line each (their pauses grow, so there are
few), and one line when the task works again, saying how long it was down.
"""

from __future__ import annotations

import logging
import sys
import time

#: The longest pause between tries: the task resumes within this long of the cause going.
MAX_PAUSE_SECONDS = 10.0


class FailureStreak:
    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger = logger
        self.what = what
        self.count = 0
        self._since = 0.0

    def failed(self, first_pause: float) -> float:
        """Record a failure (call it in the ``except`` block); return the pause to take
        before the next try: ``first_pause``, doubled at each failure in a row."""
        self.count += 1
        if self.count == 1:
            self._since = time.monotonic()
            self.logger.exception("%s failed; trying again", self.what)
        else:
            exc = sys.exc_info()[1]
            self.logger.warning(
                "%s still failing (%d tries in %.0fs): %s",
                self.what,
                self.count,
                time.monotonic() - self._since,
                f"{type(exc).__name__}: {exc}"[:300] if exc is not None else "?",
            )
        return float(min(first_pause * 2.0 ** (self.count - 1), MAX_PAUSE_SECONDS))

    def succeeded(self) -> None:
        if self.count:
            self.logger.warning(
                "%s works again after %d failed tries in %.0fs",
                self.what,
                self.count,
                time.monotonic() - self._since,
            )
        self.count = 0
