"""What moving keys between etcd-mode streamers costs: K keys released by their owner
(StreamerControl.Release: close, then one guarded etcd delete per key) and claimed by another (its first
write of them: one create-if-absent transaction per key), timed beside a write of the same keys held."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

MOVE_PATH = "bench-move"
CALL_TIMEOUT_S = 120.0


@dataclass
class MoveRound:
    """One move of every key, in seconds: the holder's write of keys it holds, its Release of them, and
    the other streamer's first write of them (its claims)."""

    held_s: float
    release_s: float
    claim_s: float


@dataclass
class MoveFigures:
    keys: int
    rounds: list[MoveRound] = field(default_factory=list)
    lines: int = 0  # lines the moves wrote (acknowledged: counted on disk with the rest)

    def summary(self) -> dict[str, Any]:
        held = statistics.median(r.held_s for r in self.rounds)
        release = statistics.median(r.release_s for r in self.rounds)
        claim = statistics.median(r.claim_s for r in self.rounds)
        move = statistics.median(r.release_s + r.claim_s for r in self.rounds)
        return {
            "keys": self.keys, "rounds": len(self.rounds),
            "held_write_ms": round(held * 1000, 1), "release_ms": round(release * 1000, 1),
            "claim_write_ms": round(claim * 1000, 1), "move_ms": round(move * 1000, 1),
            "keys_per_s": round(self.keys / move) if move else 0,
            "ms_per_key": round(move * 1000 / self.keys, 3),
            # what a move costs beyond writing the keys where they are (closing and opening files included)
            "extra_ms_per_key": round((move - held) * 1000 / self.keys, 3),
        }


def move_keys(first: str, second: str, token: str | None, keys: int, rounds: int) -> MoveFigures:
    """Write `keys` keys at `first` (it claims them), then move them to `second` and back, `rounds` moves."""
    return asyncio.run(_move_keys(first, second, token, keys, rounds))


async def _move_keys(first: str, second: str, token: str | None, keys: int, rounds: int) -> MoveFigures:
    from logstream._proto import logstream_pb2 as pb
    from logstream._proto import logstream_pb2_grpc as pb_grpc
    from logstream.node.auth import call_metadata
    from logstream.node.channel import aio_channel

    metadata = call_metadata(token=token)
    names = [pb.FileKey(path=MOVE_PATH, filename=f"k{index}") for index in range(keys)]
    figures = MoveFigures(keys)
    channels = {address: aio_channel(address) for address in (first, second)}
    try:
        async def write(address: str, seq: int) -> float:
            request = pb.LogBatchRequest(chunks=[pb.LogChunk(path=key.path, filename=key.filename,
                                                             data=f"move {seq} {key.filename}\n".encode())
                                                 for key in names])
            started = time.perf_counter()
            await pb_grpc.LogStreamerStub(channels[address]).LogBatch(  # type: ignore[no-untyped-call]
                request, timeout=CALL_TIMEOUT_S, metadata=metadata)
            figures.lines += keys
            return time.perf_counter() - started

        async def release(address: str) -> float:
            started = time.perf_counter()
            await pb_grpc.StreamerControlStub(channels[address]).Release(  # type: ignore[no-untyped-call]
                pb.ReleaseRequest(keys=names), timeout=CALL_TIMEOUT_S, metadata=metadata)
            return time.perf_counter() - started

        await write(first, 0)  # `first` claims every key
        holder, other = first, second
        for seq in range(1, rounds + 1):
            held = await write(holder, seq)
            released = await release(holder)
            claimed = await write(other, seq)
            figures.rounds.append(MoveRound(held, released, claimed))
            holder, other = other, holder
    finally:
        for channel in channels.values():
            await channel.close()
    return figures
