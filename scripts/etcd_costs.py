"""What etcd mode costs against a real local etcd (one member, its data on this disk).

    .venv/bin/python scripts/etcd_costs.py [--keys 300] [--concurrency 32]

Prints the latency of a lease grant, a keep-alive, a claim (create-if-absent transaction) and a
guarded release (delete), and the cost of moving a key (release by its owner + claim by the next),
one at a time and with several in flight. Keep-alives are per streamer (one lease covers all its
keys): a key adds nothing to them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from etcd_server import EtcdServer  # noqa: E402

from logstream.coord.etcd import Etcd  # noqa: E402
from logstream.coord.protocol import create_if_absent, delete_if_mine, owner_key  # noqa: E402


def summary(name: str, samples_s: list[float]) -> None:
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"{name:<34} n={len(ordered):<5} p50 {statistics.median(ordered) * 1000:7.2f} ms"
          f"   p99 {p99 * 1000:7.2f} ms")


async def timed(samples: list[float], call: Callable[[], Awaitable[object]]) -> None:
    start = time.perf_counter()
    await call()
    samples.append(time.perf_counter() - start)


async def measure(endpoint: str, keys: int, concurrency: int) -> None:
    etcd = Etcd([endpoint])
    try:
        grants: list[float] = []
        for _ in range(20):
            await timed(grants, lambda: etcd.grant(10))
        summary("lease grant", grants)
        a, b = (await etcd.grant(60)).lease, (await etcd.grant(60)).lease
        stream = etcd.keep_alive(a)
        alive: list[float] = []
        for _ in range(200):
            await timed(alive, lambda: stream.once(2.0))
        stream.close()
        summary("keep-alive round trip", alive)

        names = [owner_key("bench", "app", f"f{n}") for n in range(keys)]
        claims: list[float] = []
        revisions: dict[str, int] = {}

        async def claim(key: str, lease: int, who: str) -> None:
            result = await etcd.txn(create_if_absent(key, who, lease))
            assert result.succeeded
            revisions[key] = result.revision

        for key in names:
            await timed(claims, lambda: claim(key, a, "s1"))
        summary("claim (create-if-absent txn)", claims)
        releases: list[float] = []
        for key in names:
            await timed(releases, lambda: etcd.txn(delete_if_mine(key, a, revisions[key])))
        summary("release (guarded delete txn)", releases)

        for key in names:  # back to s1, then move every key to s2 one at a time
            await claim(key, a, "s1")
        moves: list[float] = []

        async def move(key: str) -> None:
            assert (await etcd.txn(delete_if_mine(key, a, revisions[key]))).succeeded
            await claim(key, b, "s2")

        for key in names:
            await timed(moves, lambda: move(key))
        summary("move a key (release + claim)", moves)

        async def move_back(key: str) -> None:
            assert (await etcd.txn(delete_if_mine(key, b, revisions[key]))).succeeded
            await claim(key, a, "s1")

        limit = asyncio.Semaphore(concurrency)

        async def limited(key: str) -> None:
            async with limit:
                await move_back(key)

        start = time.perf_counter()
        await asyncio.gather(*(limited(key) for key in names))
        elapsed = time.perf_counter() - start
        print(f"moves with {concurrency} in flight           {keys / elapsed:8.0f} keys/s")
    finally:
        await etcd.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        server = EtcdServer(Path(folder) / "etcd").start()
        try:
            asyncio.run(measure(server.endpoint, args.keys, args.concurrency))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
