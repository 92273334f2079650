"""Disk faults on a streamer's root under load: made read-only, deleted (`rm -rf`), full (a small
tmpfs). The client sees success or a definite error (never INTERNAL or UNKNOWN), nothing
acknowledged is missing, no partial line remains, and writing resumes once the root is back.

Root is needed: read-only uses `chattr +i` (plain permissions do not stop root), full needs to
mount a tmpfs; each skips with the reason when the machine cannot do it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faultnodes import Sender, load_with_fault, procs, streamer, until
from figures import Figures, Row
from history import DEFINITE, Driver, Op, check, read_roots, resume_s

pytestmark = pytest.mark.faults

KEYS = [f"disk/k{i}" for i in range(6)]
NEW_KEYS = [f"fresh/n{i}" for i in range(3)]  # first written while the fault lasts
FAULT_S = 1.5
RESUME_BOUND_S = 5.0
BAD_CODES = {"INTERNAL", "UNKNOWN", "DATA_LOSS"}


def _can(*command: str) -> str | None:
    """None when `command` works here, else why not."""
    if shutil.which(command[0]) is None:
        return f"{command[0]} is not installed"
    done = subprocess.run(command, capture_output=True, text=True)
    return None if done.returncode == 0 else f"`{' '.join(command)}` failed: {done.stderr.strip()}"


@contextlib.contextmanager
def immutable_possible(probe: Path) -> Iterator[None]:
    probe.mkdir(parents=True, exist_ok=True)
    why = _can("chattr", "+i", str(probe))
    subprocess.run(["chattr", "-i", str(probe)], capture_output=True)
    if why:
        pytest.skip(f"read-only root needs `chattr +i` (permissions do not stop root): {why}")
    yield


def codes_between(ops: list[Op], start: float, end: float = float("inf")) -> set[str]:
    return {op.code for op in ops if start <= op.start < end}


def test_a_root_made_read_only_then_writable_again(tmp_path: Path, figures: Figures) -> None:
    root = tmp_path / "s0"
    with immutable_possible(tmp_path / "probe"), procs() as started:
        node = streamer(started, "s0", root, None)
        marks: dict[str, float] = {}

        async def read_only(driver: Driver) -> None:
            await until("every key written", lambda: all(driver.acked_since(0, [k]) for k in KEYS), 5)
            try:
                subprocess.run(["chattr", "-R", "+i", str(root)], check=True, capture_output=True)
                marks["fault"] = time.monotonic()
                extra = Driver(NEW_KEYS)
                stop = asyncio.Event()
                send = Sender(node.address, 5.0)
                fresh = asyncio.create_task(extra.run(send, stop, max_ops=5))
                await asyncio.sleep(FAULT_S)
                await fresh
                await send.close()
                driver.ops.extend(extra.ops)
            finally:
                subprocess.run(["chattr", "-R", "-i", str(root)], check=True, capture_output=True)
            marks["back"] = time.monotonic()
            await until("writes acknowledged after the root is writable again",
                        lambda: all(driver.acked_since(marks["back"], [k]) for k in KEYS), RESUME_BOUND_S)

        try:
            run = load_with_fault(node.address, KEYS, {"s0": root}, read_only, timeout_s=5.0)
        finally:
            subprocess.run(["chattr", "-R", "-i", str(root)], capture_output=True)
    verdict = run.verdict
    figures.add(Row.of("streamer root read-only (chattr +i) 1.5s, then writable", verdict,
                       resume_s(run.driver.ops, marks["back"])))
    assert verdict.problems() == []
    during = codes_between(run.driver.ops, marks["fault"], marks["back"])
    assert during & DEFINITE, f"no definite refusal while the root was read-only: {during}"
    assert not (codes_between(run.driver.ops, 0) & BAD_CODES), codes_between(run.driver.ops, 0)
    fresh = [op for op in run.driver.ops if op.key in NEW_KEYS]
    assert fresh and all(op.code in DEFINITE for op in fresh), [(o.key, o.code) for o in fresh]


def test_a_root_deleted_while_writing_then_recreated(tmp_path: Path, figures: Figures) -> None:
    root = tmp_path / "s0"
    with procs() as started:
        node = streamer(started, "s0", root, None)
        marks: dict[str, float] = {}

        async def delete_root(driver: Driver) -> None:
            await until("every key written", lambda: all(driver.acked_since(0, [k]) for k in KEYS), 5)
            deadline = time.monotonic() + 5
            # `rm -rf` races with the streamer's writes (it may re-create folders): repeat until
            # one pass removed everything.
            while (await asyncio.to_thread(subprocess.run, ["rm", "-rf", str(root)], capture_output=True)).returncode:
                assert time.monotonic() < deadline, "rm -rf kept failing"
            marks["deleted"] = time.monotonic()
            await asyncio.sleep(FAULT_S)
            root.mkdir(parents=True, exist_ok=True)
            marks["back"] = time.monotonic()
            await until("writes acknowledged after the root is back",
                        lambda: all(driver.acked_since(marks["back"], [k]) for k in KEYS), RESUME_BOUND_S)

        run = load_with_fault(node.address, KEYS, {"s0": root}, delete_root, timeout_s=5.0)
    # What was written before the deletion went with it; judge what was sent after it.
    after = [op for op in run.driver.ops if op.start >= marks["deleted"]]
    verdict = check(after, read_roots({"s0": root}, run.sampler))
    figures.add(Row.of("streamer root deleted (rm -rf) 1.5s, then re-created", verdict,
                       resume_s(run.driver.ops, marks["back"])))
    assert not verdict.lost, f"{len(verdict.lost)} lines acknowledged after the root was deleted are not in it"
    assert not verdict.partial and not verdict.refused_written and not verdict.stale
    # Lines from before the deletion found again would be a ghost root; only sent lines are there.
    earlier = {op.text for op in run.driver.ops if op.start < marks["deleted"]}
    assert all(w.text in earlier for w in verdict.unsent), verdict.unsent[:3]
    assert not (codes_between(run.driver.ops, marks["deleted"]) & BAD_CODES), codes_between(run.driver.ops, marks["deleted"])


@contextlib.contextmanager
def small_tmpfs(mountpoint: Path, size: str) -> Iterator[None]:
    mountpoint.mkdir(parents=True, exist_ok=True)
    why = _can("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint))
    if why:
        pytest.skip(f"a full disk needs a small tmpfs mounted on the root: {why}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def fill(folder: Path) -> Path:
    """A file that takes every free byte of `folder`'s file system."""
    filler = folder / "filler.bin"
    with open(filler, "wb", buffering=0) as file:
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                file.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                file.write(b"\0")
    return filler


def test_a_full_disk_then_space_again(tmp_path: Path, figures: Figures) -> None:
    root = tmp_path / "s0"
    with small_tmpfs(root, "4m"), procs() as started:
        node = streamer(started, "s0", root, None)
        marks: dict[str, float] = {}

        async def full(driver: Driver) -> None:
            await until("every key written", lambda: all(driver.acked_since(0, [k]) for k in KEYS), 5)
            filler = await asyncio.to_thread(fill, root)
            marks["full"] = time.monotonic()
            await until("writes refused for lack of space",
                        lambda: sum(op.outcome == "refused" and op.start >= marks["full"] for op in list(driver.ops)) >= 10,
                        5)
            await asyncio.sleep(FAULT_S)
            os.unlink(filler)
            marks["back"] = time.monotonic()
            await until("writes acknowledged after space returned",
                        lambda: all(driver.acked_since(marks["back"], [k]) for k in KEYS), RESUME_BOUND_S)

        run = load_with_fault(node.address, KEYS, {"s0": root}, full, timeout_s=5.0)
        verdict = run.verdict  # read while the tmpfs is still mounted
    figures.add(Row.of("streamer disk full (4 MB tmpfs) 1.5s, then space again", verdict,
                       resume_s(run.driver.ops, marks["back"])))
    assert verdict.problems() == []
    during = codes_between(run.driver.ops, marks["full"], marks["back"])
    assert "RESOURCE_EXHAUSTED" in during, during
    assert not (codes_between(run.driver.ops, 0) & BAD_CODES), codes_between(run.driver.ops, 0)
