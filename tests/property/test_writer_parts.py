"""How a request naming more files than -max-open-files is cut into parts: the parts, joined, are the
request in order; each part's distinct files and folders fit the budget (or it names a single file);
a request that fits is one part."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from logstream.keys.chunks import Chunk
from logstream.keys.paths import FileKey
from logstream.streamer.handles import split_parts

keys = st.builds(FileKey, st.sampled_from(["", "a", "a/b", "c", "d"]), st.sampled_from(["f", "g", "h", "i", "j", "k"]))
requests = st.lists(keys.map(lambda k: Chunk(k, b"x\n", 1)), max_size=40)


def _needed(part: list[Chunk]) -> int:
    return len({c.key for c in part}) + len({c.key.path for c in part if c.key.path})


@given(requests, st.integers(min_value=1, max_value=30))
def test_parts_keep_the_order_and_fit_the_budget(chunks: list[Chunk], budget: int) -> None:
    parts = [list(part) for part in split_parts(chunks, budget)]
    assert [c for part in parts for c in part] == chunks
    for part in parts:
        assert part or not chunks
        assert len({c.key for c in part}) == 1 or _needed(part) <= budget
    if chunks and _needed(chunks) <= budget:
        assert len(parts) == 1


@given(requests, st.integers(min_value=1, max_value=30))
def test_parts_are_as_long_as_the_budget_allows(chunks: list[Chunk], budget: int) -> None:
    """Each part but the last could not take the next part's first chunk without going over."""
    parts = [list(part) for part in split_parts(chunks, budget)]
    for part, following in zip(parts, parts[1:]):
        assert _needed(part + following[:1]) > budget
