"""`logstream send`: send lines from arguments or stdin to a mediator or a streamer, in batches.

Exit codes: 0 when every line was acknowledged; 2 for a request the server calls wrong
(INVALID_ARGUMENT, OUT_OF_RANGE) or a bad command line; 1 for any other failure; after SIGINT or
SIGTERM, once every line read before the signal was acknowledged, 130 or 143 (128 + the signal, as a
shell reports a process the signal ended), so a script can tell an interrupted stream from a finished
one. A second signal ends the command at once (exit 130/143), dropping what was not yet sent.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TypeVar

import grpc

from logstream.client import DEFAULT_BATCH_BYTES, DEFAULT_BATCH_LINES, DEFAULT_TIMEOUT_S, RetryPolicy, SendError, SyncLogClient
from logstream.commands.send_input import FlushRule, LineReader, ListSource, fd_lines, follow
from logstream.config.goflags import GoFlagParser, UsageError, join_flag_values
from logstream.config.units import UnitError, format_duration, format_size, parse_duration, parse_size
from logstream.node.address import AddressError, parse_address
from logstream.node.channel import Reach, handshake_hint, probe, speaks_tls
from logstream.node.tls import channel_credentials

logger = logging.getLogger(__name__)

T = TypeVar("T")

DESCRIPTION = ("Send lines to a logstream mediator or streamer: the LINE arguments, or each line of stdin "
               "when there are none, as it arrives (`tail -f app.log | logstream send ...` works). A batch goes "
               "when it is full or -flush-interval after its first line; the command returns after the server "
               "acknowledged every write. Ctrl-C or SIGTERM sends the lines read so far, then exits with 130 or "
               "143; a second one exits at once. Flags may be given as -flag or --flag.")

DEFAULT_FLUSH_INTERVAL_S = 0.2
# Covers a mediator restart: its streamers re-register within seconds (8.5 s was observed).
DEFAULT_RETRY_FOR_S = 30.0

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


def _positive_duration(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError("must be longer than 0")
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
    flag("flush-interval", dest="flush_interval", type=_converter(_positive_duration),
         default=DEFAULT_FLUSH_INTERVAL_S, metavar="DURATION",
         help="send a batch this long after its first line even if it is not full "
              f"(default: {format_duration(DEFAULT_FLUSH_INTERVAL_S)})")
    flag("retry-for", dest="retry_for", type=_converter(parse_duration), default=DEFAULT_RETRY_FOR_S,
         metavar="DURATION", help="keep retrying a batch on UNAVAILABLE or a deadline for this long after its "
         f"first try, e.g. across a mediator restart (default: {format_duration(DEFAULT_RETRY_FOR_S)}; 0: no retry)")
    flag("attempts", type=_converter(_positive_int), default=None, metavar="N",
         help="also cap the tries per batch at N (default: no cap, -retry-for alone bounds them)")
    parser.add_argument("lines", nargs="*", metavar="LINE", help="lines to send (default: read stdin)")
    return parser


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def filename_warning(filename: str) -> str | None:
    """A warning for a file name the server will extend surprisingly: it always appends `.log`."""
    if filename.endswith(".log"):
        return (f"-filename {filename} writes {filename}.log (the server adds .log); "
                f"give -filename {filename.removesuffix('.log')} for {filename}")
    return None


@dataclass
class _Stop:
    """Set by SIGINT/SIGTERM: the handler only records the signal (the send loop acts on it)."""

    event: threading.Event = field(default_factory=threading.Event)
    signum: int = 0

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():  # the second signal: stop now, whatever is still unsent
            raise KeyboardInterrupt
        self.signum = signum
        self.event.set()


def send(args: argparse.Namespace, lines: Iterable[str | bytes] | None, stdin_fd: int = 0,
         stop: _Stop | None = None) -> int:
    """Send `lines` (or, when None, each line of `stdin_fd` as it arrives) and report; the exit code."""
    stop = stop or _Stop()
    retry = RetryPolicy(attempts=args.attempts, total_s=args.retry_for) if args.retry_for > 0 else \
        RetryPolicy(attempts=args.attempts or 1)
    client = SyncLogClient(args.target, args.ca, args.crt, args.pk, retry=retry,
                           timeout_s=args.timeout, batch_lines=args.batch_lines, batch_bytes=args.batch_bytes)
    rule = FlushRule(args.batch_lines, args.batch_bytes, args.flush_interval)
    source = ListSource(lines) if lines is not None else LineReader(fd_lines(stdin_fd))
    sent = 0

    def ship(batch: list[bytes]) -> None:
        nonlocal sent
        try:
            client.log_many(args.path, args.filename, batch)
        except SendError as exc:
            exc.sent_lines += sent
            raise
        sent += len(batch)

    try:
        finished = follow(source, rule, ship, stop.event)
    except SendError as exc:
        reach, server_tls = Reach.UNDECIDED, None
        if exc.code == grpc.StatusCode.UNAVAILABLE:
            reach = probe(exc.target, channel_credentials(args.ca, args.crt, args.pk), HANDSHAKE_PROBE_S)
            if reach is Reach.HANDSHAKE_FAILS:
                server_tls = speaks_tls(exc.target, HANDSHAKE_PROBE_S)
        print(f"logstream send: error: {describe(exc, uses_tls=args.ca is not None, reach=reach, server_tls=server_tls)}",
              file=sys.stderr)
        return 2 if exc.code in USER_ERRORS else 1
    finally:
        client.close()
    if isinstance(source, LineReader) and source.error is not None:
        print(f"logstream send: error: reading stdin: {source.error}; sent {plural(sent, 'line')} "
              f"to {args.target}", file=sys.stderr)
        return 1
    if not finished:
        name = signal.Signals(stop.signum).name if stop.signum else "a signal"
        print(f"logstream send: stopped by {name}: sent {plural(sent, 'line')} to {args.target} "
              "(every line read before it)", file=sys.stderr)
        return 128 + stop.signum if stop.signum else 130
    print(f"sent {plural(sent, 'line')} to {args.target}", file=sys.stderr)
    return 0


# What a refusal that is not about the request itself means, in plain words, by status code.
_REFUSALS = {
    grpc.StatusCode.ABORTED: "the file is held by another writer (another streamer or process has it open and "
                             "locked, e.g. after lines were sent straight to a streamer of the cluster; it lets go "
                             "when it closes the file idle); nothing was written",
    grpc.StatusCode.FAILED_PRECONDITION: "the server refused to write in its current state (e.g. a streamer of a "
                                         "cluster takes lines only from its mediator); nothing was written",
}


def describe(exc: SendError, uses_tls: bool, reach: Reach, server_tls: bool | None = None) -> str:
    """The one-line report of a failed send; `reach` is how far a fresh connection got afterwards,
    `server_tls` whether the server answers TLS (None: not known)."""
    text = str(exc)
    if exc.code in _REFUSALS:
        text = f"{exc.target}: {_REFUSALS[exc.code]} ({exc.code.name}: {exc.details or 'no details'})"
    # grpc reports a refused TLS session as UNAVAILABLE, like a refused connection or a server's own
    # UNAVAILABLE; the probe tells them apart on connectivity states, not on message wording.
    if exc.code == grpc.StatusCode.UNAVAILABLE and reach is Reach.HANDSHAKE_FAILS:
        text += f" ({handshake_hint(uses_tls, server_tls)})"
    if exc.sent_lines:
        text += f"; {plural(exc.sent_lines, 'line')} {'was' if exc.sent_lines == 1 else 'were'} sent before"
    return " ".join(text.split())  # one line, whatever the server put in its message


def main(argv: list[str]) -> int:
    parser = build_parser()
    # `-batch-bytes -1B`: a value that starts with '-' still belongs to its flag
    args = parser.parse_args(join_flag_values(parser, argv))
    args.target = parse_target(args.target)
    stop = _Stop()
    previous = {sig: signal.signal(sig, stop.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if (warning := filename_warning(args.filename)) is not None:
            print(f"logstream send: warning: {warning}", file=sys.stderr, flush=True)
        return send(args, args.lines or None, 0 if args.lines else sys.stdin.fileno(), stop)
    except KeyboardInterrupt:  # the second signal
        print("logstream send: stopped at once by a second signal; lines read but not yet acknowledged "
              "may be lost", file=sys.stderr)
        return 128 + (stop.signum or signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
