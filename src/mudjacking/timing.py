"""Wall-clock laps for reports: each step's seconds and the total, so a slow step shows in ``report.json``."""

from __future__ import annotations

import time


class Laps:
    """``lap(name)`` records the seconds since the previous lap (or the start) under ``name``."""

    def __init__(self) -> None:
        self.started = self._last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 2)
        self._last = now

    def with_total(self) -> dict[str, float]:
        """The laps so far plus ``total`` since the start."""
        return {**self.seconds, "total": round(time.perf_counter() - self.started, 2)}
