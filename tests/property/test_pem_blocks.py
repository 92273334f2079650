"""`pem_blocks` finds every complete PEM block, whatever text surrounds it, and nothing else; the
client's TLS checks without `cryptography` rest on it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from logstream.node.tls import pem_blocks, pem_key_problem

labels = st.sampled_from(["CERTIFICATE", "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY",
                          "ENCRYPTED PRIVATE KEY", "PUBLIC KEY"])
bodies = st.lists(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", min_size=1,
                          max_size=64), max_size=4).map(lambda lines: "".join(f"{line}\n" for line in lines))
# Text a file may hold around its PEM blocks (UTF-8: no lone surrogates).
junk = st.text(st.characters(blacklist_characters="-", blacklist_categories=("Cs",)), max_size=40).map(lambda text: text.encode())


def _block(label: str, body: str) -> bytes:
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode()


@given(st.lists(st.tuples(labels, bodies, junk), max_size=4), junk)
def test_every_complete_block_is_found_in_order(blocks: list[tuple[str, str, bytes]], tail: bytes) -> None:
    data = b"".join(before + _block(label, body) for label, body, before in blocks) + tail
    assert pem_blocks(data) == [(label, body.encode()) for label, body, _ in blocks]


@given(labels, bodies, junk)
def test_a_block_without_its_end_line_is_not_a_block(label: str, body: str, before: bytes) -> None:
    data = before + _block(label, body)
    cut = data[: data.rindex(b"-----END")]
    assert pem_blocks(cut) == []
    assert pem_key_problem(cut) == "not a PEM private key"


@given(labels, bodies)
def test_a_key_problem_follows_the_label(label: str, body: str) -> None:
    problem = pem_key_problem(_block(label, body))
    if label == "ENCRYPTED PRIVATE KEY":
        assert problem is not None and "encrypted" in problem
    elif label.endswith("PRIVATE KEY"):
        assert problem is None
    else:
        assert problem == "not a PEM private key"
