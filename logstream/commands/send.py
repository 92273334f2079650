"""`logstream send`: send lines from arguments or stdin to a mediator or a streamer, in batches."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

import grpc

from logstream.client import DEFAULT_BATCH_BYTES, DEFAULT_BATCH_LINES, DEFAULT_TIMEOUT_S, RetryPolicy, SendError, SyncLogClient
from logstream.config.flags import GoFlagParser, UsageError, join_flag_values
from logstream.config.units import UnitError, format_duration, format_size, parse_duration, parse_size
from logstream.node.address import AddressError, parse_address
from logstream.node.channel import Reach, probe
from logstream.node.tls import channel_credentials

logger = logging.getLogger(__name__)

T = TypeVar("T")

DESCRIPTION = ("Send lines to a logstream mediator or streamer: the LINE arguments, or each line of stdin "
               "when there are none. Lines travel in batches; the command returns after the server "
               "acknowledged every write. Flags may be given as -flag or --flag.")

# Status codes that mean the request itself was wrong (exit 2); every other failure exits 1.
USER_ERRORS = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE})


# How long the diagnosis of a failed connection may take (only after a failure).
HANDSHAKE_PROBE_S = 2.0


def parse_target(text: str) -> str:
    """`host:port` (IPv6 as `[::1]:8000`) with a port in 1..65535, or several as a comma list
    (mediators: the client moves to the next on failure), or UsageError."""
    try:
        return ",".join(parse_address(part.strip()) for part in text.split(","))
    except AddressError as exc:
        raise UsageError(f"-target {exc}") from None


def _converter(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type whose error names the bad value and the reason, in one line."""
    def convert(text: str) -> T:
        try:
            return parse(text)
        except (UnitError, ValueError) as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    return convert


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:  # int()'s own message quotes Python's syntax ("invalid literal ...")
        raise ValueError("not a whole number") from None
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _finite_size(text: str) -> int:
    value = parse_size(text)
    if value == -1:
        raise ValueError("must be a finite size")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = GoFlagParser(prog="logstream send", description=DESCRIPTION, allow_abbrev=False)

    def flag(name: str, **kwargs: object) -> None:
        parser.add_argument(f"-{name}", f"--{name}", **kwargs)  # type: ignore[arg-type]

    # -mediator: the name `logstream status` uses for the same address
    parser.add_argument("-target", "--target", "-mediator", "--mediator", dest="target", required=True,
                        metavar="HOST:PORT", help="mediator or streamer address; several mediators as a comma list")
    flag("path", default="", help="folder under the streamer's root (default: the root itself)")
    flag("filename", required=True, help="file name; lines go to <path>/<filename>.log")
    flag("ca", type=Path, help="CA certificate to verify the server (TLS; default: plaintext)")
    flag("crt", type=Path, help="client certificate (mutual TLS; needs -pk)")
    flag("pk", type=Path, help="client private key (mutual TLS; needs -crt)")
    flag("batch-lines", dest="batch_lines", type=_converter(_positive_int),
         default=DEFAULT_BATCH_LINES, metavar="N", help=f"most lines per request (default: {DEFAULT_BATCH_LINES})")
    flag("batch-bytes", dest="batch_bytes", type=_converter(_finite_size),
         default=DEFAULT_BATCH_BYTES, metavar="SIZE",
         help=f"most bytes per request (default: {format_size(DEFAULT_BATCH_BYTES)})")
    flag("timeout", type=_converter(parse_duration), default=DEFAULT_TIMEOUT_S, metavar="DURATION",
         help=f"deadline of one request (default: {format_duration(DEFAULT_TIMEOUT_S)})")
    flag("attempts", type=_converter(_positive_int), default=RetryPolicy().attempts, metavar="N",
         help=f"tries per request on UNAVAILABLE or a deadline (default: {RetryPolicy().attempts})")
    parser.add_argument("lines", nargs="*", metavar="LINE", help="lines to send (default: read stdin)")
    return parser


def stdin_lines(stream: BinaryIO) -> Iterator[bytes]:
    """Each line of `stream` as bytes, newline kept; bytes pass through undecoded."""
    yield from stream


def send(args: argparse.Namespace, lines: Iterable[str | bytes]) -> int:
    """Send and report; the exit code."""
    client = SyncLogClient(args.target, args.ca, args.crt, args.pk, retry=RetryPolicy(attempts=args.attempts),
                           timeout_s=args.timeout, batch_lines=args.batch_lines, batch_bytes=args.batch_bytes)
    try:
        sent = client.log_many(args.path, args.filename, lines)
    except SendError as exc:
        reach = Reach.UNDECIDED
        if exc.code == grpc.StatusCode.UNAVAILABLE:
            reach = probe(exc.target, channel_credentials(args.ca, args.crt, args.pk), HANDSHAKE_PROBE_S)
        print(f"logstream send: error: {describe(exc, uses_tls=args.ca is not None, reach=reach)}", file=sys.stderr)
        return 2 if exc.code in USER_ERRORS else 1
    finally:
        client.close()
    print(f"sent {sent} lines to {args.target}", file=sys.stderr)
    return 0


def describe(exc: SendError, uses_tls: bool, reach: Reach) -> str:
    """The one-line report of a failed send; `reach` is how far a fresh connection got afterwards."""
    text = str(exc)
    # grpc reports a refused TLS session as UNAVAILABLE, like a refused connection or a server's own
    # UNAVAILABLE; the probe tells them apart on connectivity states, not on message wording.
    if exc.code == grpc.StatusCode.UNAVAILABLE and reach is Reach.HANDSHAKE_FAILS:
        text += (" (TLS: check -ca, -crt and -pk against the server's certificates; a mutual-TLS server "
                 "needs -crt and -pk)" if uses_tls else " (the server may require TLS: give -ca, and -crt/-pk "
                 "for mutual TLS)")
    if exc.sent_lines:
        text += f"; {exc.sent_lines} lines were sent before"
    return " ".join(text.split())  # one line, whatever the server put in its message


def main(argv: list[str]) -> int:
    parser = build_parser()
    # `-batch-bytes -1B`: a value that starts with '-' still belongs to its flag
    args = parser.parse_args(join_flag_values(parser, argv))
    args.target = parse_target(args.target)
    lines: Iterable[str | bytes] = args.lines if args.lines else stdin_lines(sys.stdin.buffer)
    return send(args, lines)
