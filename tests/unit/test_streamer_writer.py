"""The writer's edges: locks, line limits, retention, echo, the open-file bound (files and folders, at
every open), running out of descriptors, fsync policies, and a root, folder or file deleted (or
read-only) under it."""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import grpc
import pytest

from logstream.keys.chunks import LineTooLong
from logstream.keys.paths import FileKey
from logstream.streamer import opening
from logstream.streamer.errors import BadRequest, FileLocked, OutOfDescriptors, RequestProblem, RootUnusable
from logstream.streamer.service import status_for
from logstream.streamer.writer import Writer

P = ParamSpec("P")
R = TypeVar("R")


def test_a_file_locked_elsewhere_is_refused_and_left_untouched(tmp_path: Path) -> None:
    (tmp_path / "held.log").write_bytes(b"theirs\n")
    other = os.open(tmp_path / "held.log", os.O_WRONLY)
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    writer = Writer(tmp_path)
    batch = [writer.chunk("", "free", b"a\n"), writer.chunk("", "held", b"b\n")]
    with pytest.raises(FileLocked, match="locked by another process"):
        writer.write_chunks([c for c in batch if c])
    assert (tmp_path / "held.log").read_bytes() == b"theirs\n"
    assert (tmp_path / "free.log").read_bytes() == b""  # opened, but nothing of the batch written
    os.close(other)
    writer.append("", "held", b"b\n")
    writer.close()
    assert (tmp_path / "held.log").read_bytes() == b"theirs\nb\n"


def test_the_writer_holds_a_lock_on_every_open_file(tmp_path: Path) -> None:
    writer = Writer(tmp_path)
    writer.append("d", "x", b"1\n")
    probe = os.open(tmp_path / "d" / "x.log", os.O_WRONLY)
    with pytest.raises(BlockingIOError):
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    writer.release([("d", "x")])
    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released: free now
    os.close(probe)
    writer.close()


def test_a_line_over_the_maximum_is_refused_and_nothing_written(tmp_path: Path) -> None:
    writer = Writer(tmp_path, max_line=10)
    writer.append("", "f", b"0123456789\n")  # exactly the maximum
    with pytest.raises(BadRequest) as caught:
        writer.append("", "f", b"ok\n" * 5 + b"01234567890\nok\n")
    writer.close()
    assert caught.value.problem is RequestProblem.LINE_TOO_LONG
    cause = caught.value.__cause__
    assert isinstance(cause, LineTooLong) and (cause.key, cause.length, cause.max_line) == (FileKey("", "f"), 11, 10)
    assert (tmp_path / "f.log").read_bytes() == b"0123456789\n"


def test_a_final_newline_is_added_and_empty_data_writes_nothing(tmp_path: Path) -> None:
    writer = Writer(tmp_path)
    assert writer.append("", "f", b"a\nb") == 2
    assert writer.append("", "f", b"") == 0
    writer.close()
    assert (tmp_path / "f.log").read_bytes() == b"a\nb\n"


@pytest.mark.parametrize("policy, rotate", [("always", False), ("always", True), ("interval", False)])
def test_every_fsync_is_timed_for_the_metrics(tmp_path: Path, policy: str, rotate: bool) -> None:
    timed: list[float] = []
    writer = Writer(tmp_path, fsync=policy, limit=4 if rotate else -1, on_fsync=timed.append)  # type: ignore[arg-type]
    writer.append("", "f", b"abc")
    if rotate:
        writer.append("", "f", b"def")  # rotates first: the full file is synced before its rename
    if policy == "interval":
        assert timed == [] and writer.sync_dirty() == 1
    assert timed and all(seconds >= 0 for seconds in timed)
    writer.close()


def test_retention_keeps_the_newest_rotated_files(tmp_path: Path) -> None:
    writer = Writer(tmp_path, limit=2, keep=2)
    for i in range(6):
        writer.append("", "r", f"{i}\n".encode())
    writer.close()
    names = sorted(os.listdir(tmp_path), key=lambda n: (n == "r.log", n))
    assert len(names) == 3 and names[-1] == "r.log"
    assert [(tmp_path / n).read_bytes() for n in names] == [b"3\n", b"4\n", b"5\n"]


def test_open_files_are_bounded_least_recently_used_first(tmp_path: Path) -> None:
    writer = Writer(tmp_path, max_open_files=2)
    for name in ("a", "b", "a", "c"):
        writer.append("", name, b"x\n")
    assert sorted(writer.open_keys()) == [("", "a"), ("", "c")]
    writer.close()


def test_idle_files_are_closed(tmp_path: Path) -> None:
    now = [0.0]
    writer = Writer(tmp_path, monotonic=lambda: now[0])
    writer.append("", "old", b"x\n")
    now[0] = 10.0
    writer.append("", "new", b"x\n")
    assert writer.close_idle(5.0) == 1
    assert writer.open_keys() == [("", "new")]
    writer.close()


@pytest.mark.parametrize("policy", ["always", "interval"])
def test_fsync_policies_write_the_same_bytes(tmp_path: Path, policy: str) -> None:
    writer = Writer(tmp_path, fsync=policy, limit=4)  # type: ignore[arg-type]
    writer.append("", "s", b"12\n34\n56\n")
    writer.sync_dirty()
    writer.close()
    assert b"".join(p.read_bytes() for p in sorted(tmp_path.iterdir(), key=lambda p: (p.name == "s.log", p.name))) \
        == b"12\n34\n56\n"


def test_console_echo_gets_each_written_chunk(tmp_path: Path) -> None:
    echoed: list[bytes] = []
    writer = Writer(tmp_path, echo=echoed.append)
    writer.append("", "e", b"hello")
    writer.close()
    assert echoed == [b"hello\n"]


def test_a_root_symlink_is_resolved_once(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "alias")
    writer = Writer(tmp_path / "alias")
    writer.append("sub", "f", b"x\n")
    writer.close()
    assert (tmp_path / "real" / "sub" / "f.log").read_bytes() == b"x\n"


def test_an_unterminated_last_line_from_a_crash_is_not_glued_to_ours(tmp_path: Path) -> None:
    (tmp_path / "f.log").write_bytes(b"whole\npartial")
    writer = Writer(tmp_path)
    writer.append("", "f", b"next\n")
    writer.close()
    assert (tmp_path / "f.log").read_bytes() == b"whole\npartial\nnext\n"


def test_a_deleted_root_is_re_created_and_no_line_goes_to_a_nameless_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    writer = Writer(root)
    writer.append("a/b", "x", b"before\n")
    writer.append("", "top", b"before\n")
    shutil.rmtree(root)
    writer.append("a/b", "x", b"after\n")
    writer.append("", "top", b"after\n")
    assert (root / "a/b/x.log").read_bytes() == b"after\n"
    assert (root / "top.log").read_bytes() == b"after\n"
    # Replaced by another folder of the same name: that one is written.
    shutil.rmtree(root)
    root.mkdir()
    writer.append("", "top", b"again\n")
    writer.close()
    assert (root / "top.log").read_bytes() == b"again\n"


def test_a_deleted_file_or_folder_is_opened_afresh(tmp_path: Path) -> None:
    writer = Writer(tmp_path)
    writer.append("d", "x", b"1\n")
    os.unlink(tmp_path / "d" / "x.log")
    writer.append("d", "x", b"2\n")
    assert (tmp_path / "d" / "x.log").read_bytes() == b"2\n"
    shutil.rmtree(tmp_path / "d")
    writer.append("d", "x", b"3\n")
    writer.close()
    assert (tmp_path / "d" / "x.log").read_bytes() == b"3\n"


def test_a_root_that_cannot_be_re_created_is_a_definite_refusal_until_it_is_back(tmp_path: Path) -> None:
    root = tmp_path / "parent" / "root"
    writer = Writer(root)
    writer.append("", "x", b"1\n")
    shutil.rmtree(tmp_path / "parent")
    (tmp_path / "parent").write_bytes(b"")  # a file where the root's parent was: mkdir fails
    with pytest.raises(RootUnusable, match=str(root)):
        writer.append("", "x", b"2\n")
    assert not writer.root_ok and writer.open_files == 0
    (tmp_path / "parent").unlink()
    writer.check_root()
    assert writer.root_ok
    writer.append("", "x", b"3\n")
    writer.close()
    assert (root / "x.log").read_bytes() == b"3\n"


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_a_read_only_root_is_a_refusal_naming_it_not_an_io_error(tmp_path: Path, code: int) -> None:
    def refuse(fd: int, data: bytes | memoryview) -> int:
        raise OSError(code, os.strerror(code))

    writer = Writer(tmp_path, write=refuse)
    with pytest.raises(RootUnusable, match=f"root {tmp_path}"):
        writer.append("", "x", b"1\n")
    writer.close()
    assert (tmp_path / "x.log").read_bytes() == b""


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_request_naming_many_more_files_than_the_cap_stays_within_it_at_every_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files and their folders together stay within -max-open-files at every instant (evicted before
    opening, folders shared), and a file needed again later in the same request (k0, first and last)
    is written in order although it was closed in between."""
    cap = 16
    peak = 0

    def counted(function: Callable[P, R]) -> Callable[P, R]:
        """`function`, noting the process's open descriptors right after each file or folder it opens."""
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            nonlocal peak
            opened = function(*args, **kwargs)
            peak = max(peak, _open_descriptors())
            return opened
        return wrapper

    monkeypatch.setattr(opening, "open_locked", counted(opening.open_locked))
    monkeypatch.setattr(opening, "walk_dirs", counted(opening.walk_dirs))
    before = _open_descriptors()
    writer = Writer(tmp_path, max_open_files=cap)
    keys = [(f"d{k % 30}" if k % 3 else "", f"k{k}") for k in range(600)]
    chunks = [writer.chunk(path, name, f"{name} 1\n".encode()) for path, name in keys]
    chunks.append(writer.chunk("", "k0", b"k0 2\n"))
    assert writer.write_chunks([c for c in chunks if c is not None]) == (601, sum(len(c.data) for c in chunks if c))
    assert before < peak <= before + cap + 1  # + the root's own descriptor (and the hooks ran)
    assert writer.descriptors <= cap
    writer.close()
    assert _open_descriptors() == before
    for path, name in keys:
        expected = f"{name} 1\n" + ("k0 2\n" if name == "k0" else "")
        assert (tmp_path / path / f"{name}.log").read_text() == expected


def test_files_in_one_folder_share_its_descriptor(tmp_path: Path) -> None:
    writer = Writer(tmp_path, max_open_files=10)
    for name in "abcdefghi":
        writer.append("one/folder", name, b"x\n")
    assert (writer.open_files, writer.descriptors) == (9, 10)
    writer.append("other", "j", b"x\n")  # a file and a folder more: the two oldest files make room
    assert (writer.open_files, writer.descriptors) == (8, 10)
    assert not {("one/folder", "a"), ("one/folder", "b")} & set(writer.open_keys())
    writer.close()


def test_a_folder_deleted_while_a_file_in_it_is_open_is_walked_afresh(tmp_path: Path) -> None:
    writer = Writer(tmp_path)
    writer.append("gone", "a", b"1\n")
    shutil.rmtree(tmp_path / "gone")
    writer.append("gone", "b", b"2\n")  # a's handle still holds the old folder: b must not go there
    writer.append("gone", "a", b"3\n")
    writer.close()
    assert (tmp_path / "gone" / "b.log").read_bytes() == b"2\n"
    assert (tmp_path / "gone" / "a.log").read_bytes() == b"3\n"


def test_out_of_descriptors_is_a_definite_refusal_not_a_crash(tmp_path: Path) -> None:
    """EMFILE (here at the os.dup that starts a folder walk) is OutOfDescriptors, which the servicer
    answers with RESOURCE_EXHAUSTED (a definite refusal: the mediator keeps the streamer)."""
    writer = Writer(tmp_path)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(int(n) for n in os.listdir("/proc/self/fd")) + 1, hard))
    try:
        try:
            while True:  # take every free number below the limit
                fillers.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == errno.EMFILE
        with pytest.raises(OutOfDescriptors, match="lower -max-open-files"):
            writer.append("deep/er", "f", b"x\n")
        with pytest.raises(OutOfDescriptors):
            writer.append("", "f", b"x\n")
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert status_for(OutOfDescriptors("x"))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert writer.append("deep/er", "f", b"x\n") == 1  # nothing was held back by the failure
    writer.close()
    assert (tmp_path / "deep/er/f.log").read_bytes() == b"x\n"
    assert not (tmp_path / "f.log").exists() or (tmp_path / "f.log").read_bytes() == b""
