"""Path validation: no generated (path, filename) makes the writer create or write anything outside
its root, even with symlinks in the root that point outside, back into the root, or to a file; no
path through any symlink and no filename made only of dots is ever accepted."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstream.keys.paths import BadTarget, Problem, validate_target
from logstream.streamer.errors import BadRequest, RequestProblem
from logstream.streamer.writer import Writer

segments = st.sampled_from(["a", "b", "..", ".", "", "out", "up", "loop", "inside", "file.log", "x\x00y",
                            "ü", "n" * 300])
paths = st.lists(segments, max_size=5).map("/".join) | st.lists(segments, max_size=4).map(lambda s: "/" + "/".join(s))
filenames = st.sampled_from(["f", "out", "link", "..", ".", "", "a/b", "nul\x00", "ok_1", "m" * 230,
                             "f_20260101T000000.000000Z", "dir", "fifo"])


def build_root(base: Path) -> tuple[Path, Path]:
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "victim.log").write_bytes(b"")
    os.symlink(outside, root / "out")  # a folder symlink leading out
    os.symlink("..", root / "up")  # relative, out of the root
    os.symlink(".", root / "loop")  # back into the root: refused too (two names for one file)
    os.mkdir(root / "inside")
    os.symlink(outside / "victim.log", root / "link.log")  # a file symlink leading out
    os.mkdir(root / "dir.log")
    os.mkfifo(root / "fifo.log")
    return root, outside


def snapshot(folder: Path) -> dict[str, bytes | None]:
    found: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames:
            found[os.path.join(dirpath, name)] = None
        for name in filenames:
            full = os.path.join(dirpath, name)
            found[full] = None if os.path.islink(full) else Path(full).read_bytes()
    return found


@given(st.lists(st.tuples(paths, filenames), min_size=1, max_size=12))
def test_nothing_is_written_outside_the_root(requests: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root, outside = build_root(Path(tmp))
        before = snapshot(outside)
        writer = Writer(root)
        real_root = os.path.realpath(root)
        for path, filename in requests:
            try:
                writer.append(path, filename, b"line\n")
            except BadRequest:
                continue
            written = os.path.realpath(os.path.join(root, path.lstrip("/"), filename + ".log"))
            assert written.startswith(real_root + "/")
        writer.close()
        assert snapshot(outside) == before


@given(paths, filenames)
def test_accepted_targets_stay_lexically_inside(path: str, filename: str) -> None:
    try:
        target = validate_target(path, filename)
    except BadTarget as exc:
        assert isinstance(exc.problem, Problem)
        return
    normal = os.path.normpath(target.relative)
    assert normal.split("/")[0] != ".." and not normal.startswith("/")
    assert normal.endswith(".log") and "\x00" not in normal


@pytest.mark.parametrize(
    ("path", "filename", "problem"),
    [
        ("/etc", "f", Problem.ABSOLUTE),
        ("a/../..", "f", Problem.PARENT),
        ("..", "f", Problem.PARENT),
        ("a", "", Problem.EMPTY_FILENAME),
        ("a", "x/y", Problem.SLASH_IN_FILENAME),
        ("a\x00", "f", Problem.NUL),
        ("a", "f\x00", Problem.NUL),
        ("a", "f" * 240, Problem.FILENAME_TOO_LONG),
        ("a/" + "s" * 256, "f", Problem.SEGMENT_TOO_LONG),
        ("/".join(["d" * 250] * 20), "f", Problem.PATH_TOO_LONG),
        ("a", "app_20260101T000000.000000Z", Problem.ROTATED),
        ("a", "..", Problem.ONLY_DOTS),
    ],
)
def test_each_bad_input_is_named(path: str, filename: str, problem: Problem) -> None:
    with pytest.raises(BadTarget) as caught:
        validate_target(path, filename)
    assert caught.value.problem is problem


@pytest.mark.parametrize(
    ("path", "filename", "problem", "link"),
    [("out", "f", RequestProblem.SYMLINK, "out"), ("up/x", "f", RequestProblem.SYMLINK, "up"),
     ("", "link", RequestProblem.SYMLINK, "link.log"), ("loop/inside", "f", RequestProblem.SYMLINK, "loop"),
     ("inside/loop2/x", "f", RequestProblem.SYMLINK, "inside/loop2"), ("", "dir", RequestProblem.NOT_A_FILE, ""),
     ("", "fifo", RequestProblem.NOT_A_FILE, ""), ("inside/f.log", "g", RequestProblem.NOT_A_FOLDER, "")],
)
def test_symlinks_are_refused(tmp_path: Path, path: str, filename: str, problem: RequestProblem, link: str) -> None:
    root, outside = build_root(tmp_path)
    (root / "inside" / "f.log").write_bytes(b"")  # a file where a folder is asked for
    os.symlink("..", root / "inside" / "loop2")  # deeper, pointing inside the root
    writer = Writer(root)
    with pytest.raises(BadRequest) as caught:
        writer.append(path, filename, b"x\n")
    assert (caught.value.problem, caught.value.link) == (problem, link)
    writer.append("inside", "ok", b"x\n")  # the same folder by its real name is fine
    writer.close()
    assert (root / "inside" / "ok.log").read_bytes() == b"x\n"
    assert not (root / "inside" / "f.log.log").exists() and not (root / "f.log").exists()
    assert snapshot(outside) == {str(outside / "victim.log"): b""}


@given(paths, filenames)
def test_no_path_through_a_symlink_is_written(path: str, filename: str) -> None:
    """Whatever the request, an accepted one walked no symlink: its folder's real path is its
    lexical path below the root."""
    with tempfile.TemporaryDirectory() as tmp:
        root, _ = build_root(Path(tmp))
        writer = Writer(root)
        try:
            writer.append(path, filename, b"line\n")
        except BadRequest:
            return
        finally:
            writer.close()
        target = validate_target(path, filename)
        folder = root.joinpath(*target.dirs)
        assert os.path.realpath(folder) == os.path.join(os.path.realpath(root), *target.dirs)


@given(st.integers(min_value=1, max_value=40), st.sampled_from(["", "a", "a/b"]))
def test_filenames_made_only_of_dots_are_refused(dots: int, path: str) -> None:
    with pytest.raises(BadTarget) as caught:
        validate_target(path, "." * dots)
    assert caught.value.problem is Problem.ONLY_DOTS


@given(st.text(alphabet=".x", min_size=1, max_size=20).filter(lambda name: name.strip(".") != ""),
       st.sampled_from(["", "a"]))
def test_filenames_with_dots_and_more_are_accepted(name: str, path: str) -> None:
    assert validate_target(path, name).stem == name
