"""How the CLI prints a user error: one line per problem, each naming the command, exit code 2."""

from __future__ import annotations

import io

from logstream.cluster import ConfigError
from logstream.errors import UserError, report


def test_each_problem_is_one_prefixed_line() -> None:
    out = io.StringIO()
    assert report("logstream run", ConfigError(["a: bad", "b: worse"]), out) == 2
    assert out.getvalue() == "logstream run: error: a: bad\nlogstream run: error: b: worse\n"


def test_a_problem_without_words_still_says_what_it_is() -> None:
    out = io.StringIO()
    assert report("logstream x", UserError(), out) == 2
    assert out.getvalue() == "logstream x: error: UserError\n"
