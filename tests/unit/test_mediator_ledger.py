"""The lease ledger: a restarted mediator waits exactly for the leases its previous run may have out."""

from pathlib import Path

import pytest

from logstream.mediator.ledger import LeaseLedger

WORST_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ledger(path: Path, clock: Clock, boot: str = "boot-1") -> LeaseLedger:
    return LeaseLedger(path, WORST_S, clock=clock, boot=lambda: boot)


def test_a_first_start_waits_for_nothing_and_can_write(tmp_path: Path) -> None:
    clock = Clock()
    first = ledger(tmp_path / "m.lease", clock)
    assert first.remaining_s() == 0.0
    assert (tmp_path / "m.lease").exists()


def test_a_restart_waits_for_the_recorded_horizon_only(tmp_path: Path) -> None:
    clock = Clock()
    first = ledger(tmp_path / "m.lease", clock)
    first.cover(horizon_s=8.0, ahead_s=5.0)  # leases may live until 1008; recorded 1013
    clock.now = 1004.0  # crash and restart 4s later
    assert ledger(tmp_path / "m.lease", clock).remaining_s() == pytest.approx(9.0)
    clock.now = 1020.0
    assert ledger(tmp_path / "m.lease", clock).remaining_s() == 0.0


def test_the_file_is_rewritten_only_when_it_falls_short(tmp_path: Path) -> None:
    clock = Clock()
    first = ledger(tmp_path / "m.lease", clock)
    first.cover(8.0, 5.0)
    written = (tmp_path / "m.lease").read_text()
    clock.now += 4.0  # needed 1012 <= recorded 1013
    first.cover(8.0, 5.0)
    assert (tmp_path / "m.lease").read_text() == written
    clock.now += 2.0  # needed 1014 > 1013
    first.cover(8.0, 5.0)
    assert (tmp_path / "m.lease").read_text() != written
    assert first.recorded_until == pytest.approx(1019.0)


def test_a_restart_never_records_less_than_the_previous_run_may_have_out(tmp_path: Path) -> None:
    clock = Clock()
    ledger(tmp_path / "m.lease", clock).cover(8.0, 0.0)  # until 1008
    clock.now = 1001.0
    second = ledger(tmp_path / "m.lease", clock)  # restarts, then crashes before any ping
    assert second.remaining_s() == pytest.approx(7.0)
    third = ledger(tmp_path / "m.lease", clock)
    assert third.remaining_s() == pytest.approx(7.0)


def test_after_a_reboot_no_lease_survives(tmp_path: Path) -> None:
    clock = Clock()
    ledger(tmp_path / "m.lease", clock).cover(8.0, 5.0)
    assert ledger(tmp_path / "m.lease", clock, boot="boot-2").remaining_s() == 0.0


@pytest.mark.parametrize("content", ["garbage", "boot-1 not-a-number", "boot-1 1e300"])
def test_an_unreadable_or_absurd_record_waits_at_most_the_worst_case(tmp_path: Path, content: str) -> None:
    (tmp_path / "m.lease").write_text(content)
    assert ledger(tmp_path / "m.lease", Clock()).remaining_s() == pytest.approx(WORST_S)


def test_an_unwritable_ledger_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        ledger(tmp_path / "missing-folder" / "m.lease", Clock())


def test_a_lease_file_that_cannot_be_opened_is_a_user_error_naming_it(tmp_path: Path) -> None:
    from logstream.config.flags import UsageError
    from logstream.config.settings import MediatorSettings
    from logstream.errors import UserError
    from logstream.mediator.ledger import LeaseFileError
    from logstream.mediator.server import open_ledger

    (tmp_path / "file").write_text("")
    settings = MediatorSettings(lease_file=tmp_path / "file" / "below")  # a folder that is a file
    with pytest.raises(LeaseFileError, match="-lease-file .*below") as caught:
        open_ledger(settings)
    assert isinstance(caught.value, UserError) and not isinstance(caught.value, UsageError)
