"""The handler's disk spool: segments round-trip, a damaged one is refused (never half-replayed), the
folder stays within its bound, one segment is claimed by one replayer at a time, and a handler that
closes while the cluster is away leaves its records to the next one, which sends them first."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstream import spool
from logstream.handler import LogstreamHandler

if TYPE_CHECKING:
    from tests.conftest import MemoryLogServer

records_st = st.lists(st.binary(max_size=40).map(lambda data: data + b"\n"), max_size=20)




@given(records_st, st.text(max_size=10), st.text(min_size=1, max_size=10))
def test_a_segment_round_trips_and_every_cut_is_refused(records: list[bytes], path: str, filename: str) -> None:
    blob = spool.encode_segment(path, filename, records)
    assert spool.decode_segment(blob) == spool.Segment(path, filename, records)
    for cut in range(len(blob)):
        with pytest.raises(spool.SpoolError):
            spool.decode_segment(blob[:cut])


@given(records_st, st.integers(min_value=0, max_value=600))
def test_fit_keeps_a_segment_within_its_room(records: list[bytes], room: int) -> None:
    count = spool.fit(records, room, "p", "f")
    if count:
        assert len(spool.encode_segment("p", "f", records[:count])) <= room
    if count < len(records):
        assert len(spool.encode_segment("p", "f", records[:count + 1])) > room


def test_segments_are_claimed_once_replayed_in_order_and_deleted_when_done(tmp_path: Path) -> None:
    first = spool.write_segment(tmp_path, "p", "f", [b"a\n"])
    second = spool.write_segment(tmp_path, "p", "f", [b"b\n"])
    assert spool.segments(tmp_path) == [first, second]
    mine = spool.claims(tmp_path)
    claim = next(mine)
    assert claim.file == first and claim.read().records == [b"a\n"]
    others = list(spool.claims(tmp_path))  # another replayer skips the segment held
    assert [other.file for other in others] == [second]
    for other in others:
        other.release()
    claim.done()
    assert spool.segments(tmp_path) == [second]
    claim = next(mine)
    assert claim.file == second
    claim.release()  # not delivered: stays for the next replayer
    assert spool.segments(tmp_path) == [second]


def test_a_damaged_segment_is_quarantined_and_stale_temporaries_removed(tmp_path: Path) -> None:
    good = spool.write_segment(tmp_path, "p", "f", [b"a\n", b"b\n"])
    good.write_bytes(good.read_bytes()[:-2])
    [claim] = list(spool.claims(tmp_path))
    with pytest.raises(spool.SpoolError):
        claim.read()
    bad = claim.quarantine()
    assert bad.name.endswith(".spool.bad") and spool.segments(tmp_path) == []
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    (tmp_path / f".tmp-{dead_pid}-x.spool").write_bytes(b"half")
    (tmp_path / f".tmp-{os.getpid()}-y.spool").write_bytes(b"being written")
    spool.remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")) == [f".tmp-{os.getpid()}-y.spool"]


def test_records_left_at_close_are_sent_first_by_the_next_handler(tmp_path: Path, memory_server: MemoryLogServer,
                                                                 down_port: int) -> None:
    folder = tmp_path / "spool"
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "%s", None, None)

    def emit(handler: LogstreamHandler, text: str) -> None:
        record.msg = text
        handler.handle(record)

    down = LogstreamHandler(f"127.0.0.1:{down_port}", "apps", "kept", spool_dir=folder, flush_interval_s=0.01,
                            close_timeout_s=0.3)
    for n in range(50):
        emit(down, f"old {n}")
    down.close()
    assert (down.sent, down.spooled, down.left_at_close, down.dropped) == (0, 50, 0, 0)
    assert len(spool.segments(folder)) == 1

    up = LogstreamHandler(memory_server.target, "apps", "kept", spool_dir=folder, flush_interval_s=0.01)
    for n in range(5):
        emit(up, f"new {n}")
    assert up.flush(5)
    assert memory_server.lines("apps", "kept") == [f"old {n}" for n in range(50)] + [f"new {n}" for n in range(5)]
    assert (up.sent, up.replayed, up.dropped) == (55, 50, 0)
    assert spool.segments(folder) == []
    up.close()


def test_the_spool_stays_within_its_bytes(tmp_path: Path, down_port: int) -> None:
    folder = tmp_path / "spool"
    handler = LogstreamHandler(f"127.0.0.1:{down_port}", "apps", "small", spool_dir=folder, spool_bytes=1000,
                               flush_interval_s=0.01, close_timeout_s=0.3)
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "x" * 95, None, None)
    for _ in range(30):
        handler.handle(record)
    handler.close()
    used = spool.used_bytes(folder)
    assert used <= 1000 and handler.spooled >= 8
    assert handler.spooled + handler.left_at_close == 30 and handler.dropped == handler.left_at_close
