"""Properties of the handler's pure decisions: a shaped record is one bounded unit ending in a newline,
never longer than the limit per line, kept unchanged when it fits; escaping round-trips; backoff grows
to its cap and never beyond."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from logstream.handler_policy import TRUNCATED_MARKER, backoff_s, records_through, shape_record

texts = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300)
limits = st.integers(min_value=1, max_value=400)


@given(texts, limits, st.sampled_from(["keep", "escape"]))
def test_truncated_records_fit_and_end_in_one_newline(text: str, limit: int, newlines: str) -> None:
    shaped = shape_record(text, limit, "truncate", newlines)  # type: ignore[arg-type]
    assert shaped.data is not None and shaped.data.endswith(b"\n")
    lines = shaped.data[:-1].split(b"\n")
    assert all(len(line) <= limit for line in lines)
    if newlines == "escape":
        assert len(lines) == 1
    if shaped.cut and limit >= len(TRUNCATED_MARKER) + 4:
        assert any(line.endswith(TRUNCATED_MARKER) for line in lines)
        for line in lines:  # cut on a character boundary: every line still decodes
            line.decode("utf-8")


@given(texts, limits)
def test_records_that_fit_are_sent_unchanged_and_others_dropped(text: str, limit: int) -> None:
    shaped = shape_record(text, limit, "drop", "keep")
    body = text.encode()
    body = body[:-1] if body.endswith(b"\n") else body
    if all(len(line) <= limit for line in body.split(b"\n")):
        assert shaped.data == body + b"\n" and not shaped.cut
    else:
        assert shaped.data is None


@given(texts)
def test_escaping_is_reversible(text: str) -> None:
    shaped = shape_record(text, 10_000, "drop", "escape")
    assert shaped.data is not None
    escaped = shaped.data[:-1].decode()
    assert "\n" not in escaped and "\r" not in escaped
    body = text[:-1] if text.endswith("\n") else text
    # undo the escapes left to right: "\\" -> "\", "\n" -> newline, "\r" -> carriage return
    out, i = [], 0
    while i < len(escaped):
        if escaped[i] == "\\":
            out.append({"\\": "\\", "n": "\n", "r": "\r"}[escaped[i + 1]])
            i += 2
        else:
            out.append(escaped[i])
            i += 1
    assert "".join(out) == body


@given(st.integers(min_value=1, max_value=200), st.floats(min_value=0.0, max_value=1.0))
def test_backoff_is_capped_and_grows(failures: int, rand: float) -> None:
    wait = backoff_s(failures, 0.1, 5.0, lambda: rand)
    ceiling = min(5.0, 0.1 * 2 ** min(failures - 1, 60))
    assert ceiling / 2 <= wait <= ceiling <= 5.0
    assert backoff_s(0, 0.1, 5.0) == 0.0


@given(st.lists(st.integers(min_value=1, max_value=4), max_size=12), st.data())
def test_records_through_never_skips_a_record(line_counts: list[int], data: st.DataObject) -> None:
    records = [b"x\n" * count for count in line_counts]
    whole = data.draw(st.integers(min_value=0, max_value=len(records)))
    extra = data.draw(st.integers(min_value=0, max_value=line_counts[whole] - 1)) if whole < len(records) else 0
    lines = sum(line_counts[:whole]) + extra  # `whole` records and part of the next went through
    assert records_through(records, lines) == whole
    assert records_through(records, whole) <= whole  # a count of records, read as lines, is safe too
