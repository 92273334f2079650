"""Open descriptors and peak resident memory of running processes, sampled from /proc (Linux) in a thread."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass


def status_kb(status_text: str, field: str) -> int | None:
    """The kB value of `field` (VmHWM, VmRSS, ...) in the text of /proc/<pid>/status, None if absent."""
    for line in status_text.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                return int(parts[0])
    return None


def open_fds(pid: int) -> int | None:
    """Descriptors `pid` has open now; None when /proc cannot tell (not Linux, process gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def peak_rss_kb(pid: int) -> int | None:
    """The process's peak resident set size so far (VmHWM); None when /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as file:
            return status_kb(file.read(), "VmHWM")
    except OSError:
        return None


@dataclass
class ProcFigures:
    name: str
    pid: int
    fds_start: int | None = None  # when sampling began (the node idle, before the load)
    fds_peak: int | None = None  # the most seen in any sample
    rss_peak_kb: int | None = None  # VmHWM at the last sample: the peak over the process's life

    def note(self, fds: int | None, rss_kb: int | None) -> None:
        if fds is not None:
            self.fds_start = fds if self.fds_start is None else self.fds_start
            self.fds_peak = fds if self.fds_peak is None else max(self.fds_peak, fds)
        if rss_kb is not None:
            self.rss_peak_kb = rss_kb

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "pid": self.pid,
            "fds_start": self.fds_start,
            "fds_peak": self.fds_peak,
            "rss_peak_mb": None if self.rss_peak_kb is None else round(self.rss_peak_kb / 1024, 1),
        }


class Sampler:
    """Samples each named process every `interval_s` from start() until stop(), in one thread it owns.

    Descriptors are a peak of samples, so a burst shorter than the interval can be missed; peak RSS is
    the kernel's own high-water mark (VmHWM), so it is exact.
    """

    def __init__(self, processes: list[tuple[str, int]], interval_s: float = 0.05) -> None:
        self.figures = [ProcFigures(name, pid) for name, pid in processes]
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="procstat", daemon=True)

    def sample(self) -> None:
        for figures in self.figures:
            figures.note(open_fds(figures.pid), peak_rss_kb(figures.pid))

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.sample()

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> list[ProcFigures]:
        """Stop sampling, take a last sample (call it while the processes still run) and return the figures."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
        self.sample()
        return self.figures
