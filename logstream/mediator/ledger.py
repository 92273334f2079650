"""The lease ledger: a file recording until when leases this mediator granted may still live.

A restarted mediator must not place keys while streamers may still hold leases from its previous
run (docs/cluster-protocol.md, "Mediator restart"). Without a record it must assume the worst and
wait a whole lease; with this ledger it waits only for what the previous run actually granted, and
not at all on a first start. Times are CLOCK_BOOTTIME (shared by every process, never stepped by
NTP), tagged with the boot id: after a reboot no lease can have survived.

It also records the streamers (id, address) it pings, so that a restarted mediator pings them at
once instead of waiting for them to register again. File: a line `BOOT UNTIL`, then one line
`holder<TAB>ID<TAB>ADDR` per streamer (an older file without them still reads).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from logstream.errors import UserError

logger = logging.getLogger(__name__)

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


class LeaseFileError(UserError):
    """A -lease-file that cannot be opened or written."""


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def boot_id() -> str:
    try:
        return BOOT_ID_FILE.read_text().strip()
    except OSError:  # not Linux: fall back to the clock alone
        return "unknown"


class LeaseLedger:
    """Reads the previous run's bound once, then keeps the file ahead of every lease granted."""

    def __init__(self, path: Path, worst_case_s: float, *, clock: Callable[[], float] = boottime,
                 boot: Callable[[], str] = boot_id) -> None:
        """`worst_case_s`: the longest a lease can outlive its grant (ping timeout + 1.1 x lease)."""
        self.path = path
        self._clock = clock
        self._boot = boot()
        # A previous run's leases cannot outlive the worst case from now (the clamp also tames a
        # corrupt or far-future record).
        self.previous_holders: list[tuple[str, str]] = []
        self.previous_until = min(self._read(), clock() + worst_case_s)
        self.recorded_until = float("-inf")
        self.recorded_holders: frozenset[tuple[str, str]] = frozenset()
        self.cover(0.0, 0.0)  # fails now, at start-up, if the file cannot be written

    def _read(self) -> float:
        try:
            first, *rest = self.path.read_text().splitlines()
            boot, until = first.split()
            self.previous_holders = [(fields[1], fields[2]) for fields in (line.split("\t") for line in rest)
                                     if len(fields) == 3 and fields[0] == "holder"]
            return float(until) if boot == self._boot else float("-inf")
        except FileNotFoundError:
            return float("-inf")
        except (OSError, ValueError) as exc:
            # Unreadable: assume the worst is still ahead (clamped to the worst case above).
            logger.warning("lease ledger %s unreadable (%s): assuming leases may still live", self.path, exc)
            return float("inf")

    def remaining_s(self) -> float:
        """How long leases of the previous run may still live (0: none)."""
        return max(0.0, self.previous_until - self._clock())

    def cover(self, horizon_s: float, ahead_s: float, holders: Iterable[tuple[str, str]] = ()) -> None:
        """Before granting a lease that may live `horizon_s` from now (to one of `holders`): make
        sure the file says so.

        The file is rewritten only when it falls short, then `ahead_s` further (one health round),
        or when the holders changed, so a steady cluster writes it about once per interval.
        """
        now = self._clock()
        needed = now + horizon_s
        # The previous run's streamers stay listed while their leases may live: a crash now must
        # not forget them either. Names with a tab or a line break are not recorded.
        current = {h for h in holders if not any(c in f for f in h for c in "\t\r\n")}
        if now < self.previous_until:
            current.update(self.previous_holders)
        wanted = frozenset(current)
        if needed <= self.recorded_until and wanted == self.recorded_holders:
            return
        # Never record less than the previous run may still have out: a crash now must not forget it.
        until = max(needed + ahead_s, self.previous_until, self.recorded_until)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(f"{self._boot} {until:.6f}\n" + "".join(f"holder\t{i}\t{a}\n" for i, a in sorted(wanted)))
        os.replace(temporary, self.path)  # atomic: a crash leaves the old or the new bound
        self.recorded_until = until
        self.recorded_holders = wanted
