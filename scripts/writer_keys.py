"""Lines/s of the streamer's write path (validation + Writer.write_chunks) for N distinct keys.

    .venv/bin/python scripts/writer_keys.py 1 100 1000 10000 50000 [--profile N]

Each call carries 1,000 lines of 100 bytes spread over the keys (one chunk per key per call, as the
mediator forwards them), the default -max-open-files (256), into a fresh temporary root. The files
are created by an untimed first pass (creating a file costs ~0.2 ms on this ext4, whoever asks):
the figure is the steady state of a collector whose files exist.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from logstream.streamer.writer import Writer

LINE = b"x" * 99 + b"\n"
LINES_PER_CALL = 1000


def calls(keys: int, total_lines: int) -> list[list[tuple[str, str, bytes]]]:
    """The requests: (path, filename, data) chunks, 1,000 lines a call, keys visited round robin."""
    out: list[list[tuple[str, str, bytes]]] = []
    key = 0
    for _ in range(max(1, total_lines // LINES_PER_CALL)):
        per_key: dict[int, int] = {}
        for _ in range(LINES_PER_CALL):
            per_key[key] = per_key.get(key, 0) + 1
            key = (key + 1) % keys
        out.append([(f"svc{k % 100}", f"f{k}", LINE * n) for k, n in per_key.items()])
    return out


def run(keys: int, total_lines: int, max_open: int) -> float:
    requests = calls(keys, total_lines)
    with tempfile.TemporaryDirectory() as tmp:
        writer = Writer(Path(tmp), max_open_files=max_open)
        for start in range(0, keys, LINES_PER_CALL):  # create every file, untimed
            writer.write_chunks([c for c in (writer.chunk(f"svc{k % 100}", f"f{k}", LINE)
                                             for k in range(start, min(keys, start + LINES_PER_CALL))) if c])
        start = time.perf_counter()
        lines = 0
        for request in requests:
            chunks = [c for c in (writer.chunk(p, f, d) for p, f, d in request) if c is not None]
            lines += writer.write_chunks(chunks)[0]
        elapsed = time.perf_counter() - start
        writer.close()
    return lines / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("keys", type=int, nargs="+")
    parser.add_argument("--lines", type=int, default=200_000, help="lines per run (at least 2 per key)")
    parser.add_argument("--max-open-files", type=int, default=256)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each run")
    args = parser.parse_args()
    for keys in args.keys:
        total = max(args.lines, 2 * keys)
        if args.profile:
            profile = cProfile.Profile()
            rate = profile.runcall(run, keys, total, args.max_open_files)
            pstats.Stats(profile).sort_stats("tottime").print_stats(18)
        else:
            rate = run(keys, total, args.max_open_files)
        print(f"{keys:>7} keys: {rate:>10,.0f} lines/s", flush=True)


if __name__ == "__main__":
    main()
