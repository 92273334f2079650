"""Rate-limited warnings: the first event of each cause is logged at once, later ones are counted
and summed up in one line per cause at most every `every_s` seconds (never one line per request)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

EVERY_S = 60.0


class RateLimitedLog:
    """One warning per cause, then a count per cause every `every_s` seconds while it goes on."""

    def __init__(self, logger: logging.Logger, what: str, every_s: float = EVERY_S,
                 clock: Callable[[], float] = time.monotonic, level: int = logging.WARNING) -> None:
        self._logger = logger
        self._what = what
        self._every_s = every_s
        self._clock = clock
        self._level = level
        self._last: dict[str, float] = {}  # cause -> when its last line was logged
        self._pending: dict[str, int] = {}  # cause -> events since that line
        self.counts: dict[str, int] = {}  # cause -> events since start

    def note(self, cause: str, detail: str = "") -> None:
        """Count one event of `cause`; log it if it is the first, or a summary if one is due."""
        self.counts[cause] = self.counts.get(cause, 0) + 1
        now = self._clock()
        last = self._last.get(cause)
        if last is None:
            self._last[cause] = now
            self._logger.log(self._level, "%s: %s%s (said once; repeats are counted every %.0fs)", self._what,
                             cause, f" ({detail})" if detail else "", self._every_s)
            return
        pending = self._pending.get(cause, 0) + 1
        if now - last >= self._every_s:
            self._logger.log(self._level, "%s: %s: %d more in the last %.0fs (%d in all)", self._what, cause,
                             pending, now - last, self.counts[cause])
            self._last[cause] = now
            pending = 0
        self._pending[cause] = pending

    def flush(self) -> None:
        """Log the counts not yet said (at shutdown: the last minute's refusals are not lost)."""
        now = self._clock()
        for cause, pending in self._pending.items():
            if pending:
                self._logger.log(self._level, "%s: %s: %d more in the last %.0fs (%d in all)", self._what, cause,
                                 pending, now - self._last[cause], self.counts[cause])
        self._pending.clear()
