"""`logstream bench --cluster N --mediators LIST`: the same load through the embedded single mediator and
through etcd-mode clusters (M stateless mediators on their own ports, or W on one port), one after the
other in one run, and the cost of moving keys between etcd-mode streamers."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logstream.commands.bench_client import Plan, Result, run_mode
from logstream.commands.bench_etcd import LocalEtcd
from logstream.commands.bench_move import MoveFigures, move_keys
from logstream.commands.bench_nodes import NodeProc, cpu_seconds, wait_cluster
from logstream.config.flags import UsageError

ETCD_CLUSTER = "bench"


@dataclass(frozen=True)
class Scenario:
    """One way of running the routing tier: the embedded mediator, or `mediators` etcd-mode
    mediator processes, each on its own port or all on one (`-reuse-port`)."""

    mediators: int
    etcd: bool
    one_port: bool = False

    @property
    def name(self) -> str:
        if not self.etcd:
            return "embedded, 1 mediator"
        if self.one_port:
            return f"etcd, {self.mediators} workers on one port"
        return f"etcd, {self.mediators} mediator{'s' if self.mediators > 1 else ''}"


def parse_counts(text: str, flag: str, least: int) -> list[int]:
    """A comma list of whole numbers >= `least` ("0,1,2"); UsageError naming `flag` otherwise."""
    counts = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < least:
            raise UsageError(f"{flag} {text!r}: a comma list of whole numbers >= {least} is required (e.g. 1,2)")
        counts.append(int(part))
    return counts


def plan_scenarios(mediators: list[int], workers: list[int], etcd: bool, embedded: bool) -> list[Scenario]:
    """The scenarios to measure, in order: the embedded mediator first (with 0 in `mediators`, with
    `embedded`, or for M = 1 when nothing asks for etcd), then etcd mode with M mediators each, then W
    workers on one port. etcd mode is asked for by `etcd`, by any M > 1, or by `workers`."""
    etcd = etcd or any(m > 1 for m in mediators) or bool(workers)
    scenarios: list[Scenario] = []

    def add(scenario: Scenario) -> None:
        if scenario in scenarios:
            raise UsageError(f"--mediators/--workers/--embedded name {scenario.name!r} twice"
                             + ("" if etcd else " (give --etcd to measure M=1 in etcd mode)"))
        scenarios.append(scenario)

    if embedded:
        add(Scenario(1, False))
    for count in sorted(mediators, key=lambda m: m > 0):  # the embedded one (0) first
        add(Scenario(count, True) if etcd and count else Scenario(1, False))
    for count in workers:
        add(Scenario(count, True, one_port=True))
    return scenarios


@dataclass
class Setup:
    """What every scenario shares: the streamers' count and flags, the mediators' extra flags, the modes
    and a Plan for a (target, mode), the keys to move (0: none) and how many times."""

    streamers: int
    clients: int
    modes: list[str]
    plan_for: Callable[[str, str], Plan]
    size: str
    mediator_flags: list[str]
    streamer_flags: list[str]
    move_keys: int
    move_rounds: int
    show_progress: bool


@dataclass
class Outcome:
    results: list[tuple[Scenario, list[Result]]] = field(default_factory=list)
    # per scenario and mode: CPU cores the mediators and the streamers used while it ran (CPU s / s)
    cpu: list[list[tuple[float, float]]] = field(default_factory=list)
    move: MoveFigures | None = None
    exit_codes: list[int] = field(default_factory=list)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def lines_acked(self) -> int:
        acked = sum(r.lines + r.warmup_lines for _, results in self.results for r in results)
        return acked + (self.move.lines if self.move else 0)


class _EtcdCluster:
    """A local etcd and N etcd-mode streamers, started on first use and shared by the etcd scenarios."""

    def __init__(self, setup: Setup, workdir: Path, token_file: Path) -> None:
        self.setup, self.workdir, self.token_file = setup, workdir, token_file
        self.etcd: LocalEtcd | None = None
        self.streamers: list[NodeProc] = []
        self.addresses: list[str] = []

    def start(self) -> str:
        if self.etcd is None:
            self.etcd = LocalEtcd(self.workdir / "etcd-data").start()
            for index in range(self.setup.streamers):
                self.streamers.append(NodeProc(
                    ["streamer", "-port", "0", "-host", "127.0.0.1", "-path", str(self.workdir / "etcd" / f"s{index}"),
                     "-id", f"s{index}", "-etcd", self.etcd.endpoint, "-cluster", ETCD_CLUSTER,
                     "-token-file", str(self.token_file), "-size", self.setup.size, *self.setup.streamer_flags],
                    f"etcd streamer {index}"))
            self.addresses = [f"127.0.0.1:{node.wait_listening()}" for node in self.streamers]
        return self.etcd.endpoint

    def stop(self) -> list[int]:
        codes = [node.stop() for node in reversed(self.streamers)]
        if self.etcd is not None:
            self.etcd.stop()
        return codes


def run_comparison(setup: Setup, scenarios: list[Scenario], workdir: Path) -> Outcome:
    """Each scenario in turn under the same load; then, with etcd scenarios and 2 streamers or more,
    the moves. Every node is stopped before this returns."""
    from logstream.node.token_file import ensure_token, read_token

    token_file = workdir / "cluster.token"
    ensure_token(token_file)
    outcome = Outcome(load_before=os.getloadavg())
    shared = _EtcdCluster(setup, workdir, token_file)
    try:
        for scenario in scenarios:
            mediators: list[NodeProc] = []
            streamers: list[NodeProc] = []
            try:
                if scenario.etcd:
                    target = _start_etcd_mediators(setup, scenario, shared, token_file, mediators)
                else:
                    target = _start_embedded(setup, workdir, token_file, mediators, streamers)
                results, cpu = [], []
                tier = shared.streamers if scenario.etcd else streamers
                for mode in setup.modes:
                    if setup.show_progress:
                        print(f"  {scenario.name}: {mode}", file=sys.stderr)
                    before = [_cpu(mediators), _cpu(tier)]
                    result = run_mode(setup.plan_for(target, mode), setup.clients, setup.show_progress)
                    results.append(result)
                    # the nodes idle while the clients start, so the seconds measured are the ones that count
                    cpu.append((_per_s(_cpu(mediators) - before[0], result), _per_s(_cpu(tier) - before[1], result)))
                outcome.results.append((scenario, results))
                outcome.cpu.append(cpu)
            finally:
                outcome.exit_codes += [node.stop() for node in [*reversed(streamers), *mediators]]
        if setup.move_keys and shared.etcd is not None:
            outcome.move = move_keys(shared.addresses[0], shared.addresses[1], read_token(token_file),
                                     setup.move_keys, setup.move_rounds)
    finally:
        outcome.exit_codes += shared.stop()
        outcome.load_after = os.getloadavg()
    return outcome


def _cpu(nodes: list[NodeProc]) -> float:
    return sum(cpu_seconds(node.proc.pid) for node in nodes)


def _per_s(cpu_s: float, result: Result) -> float:
    return round(cpu_s / result.seconds, 2) if result.seconds else 0.0


def _start_embedded(setup: Setup, workdir: Path, token_file: Path, mediators: list[NodeProc],
                    streamers: list[NodeProc]) -> str:
    token = ["-token-file", str(token_file)]
    mediator = NodeProc(["mediator", "-port", "0", "-host", "127.0.0.1", "-health-interval", "1s", *token,
                         *setup.mediator_flags], "embedded mediator")
    mediators.append(mediator)
    target = f"127.0.0.1:{mediator.wait_listening()}"
    for index in range(setup.streamers):
        streamers.append(NodeProc(["streamer", "-port", "0", "-host", "127.0.0.1", "-mediator", target,
                                   "-path", str(workdir / "embedded" / f"s{index}"), "-size", setup.size, *token,
                                   *setup.streamer_flags], f"streamer {index}"))
    for node in streamers:
        node.wait_listening()
    wait_cluster(target, setup.streamers)
    return target


def _start_etcd_mediators(setup: Setup, scenario: Scenario, shared: _EtcdCluster, token_file: Path,
                          mediators: list[NodeProc]) -> str:
    """The scenario's mediators over the shared etcd cluster; the clients' target (a comma list for
    mediators on their own ports: each client process starts on a different one)."""
    endpoint = shared.start()
    common = ["-host", "127.0.0.1", "-etcd", endpoint, "-cluster", ETCD_CLUSTER, "-token-file", str(token_file)]
    port = 0
    addresses = []
    for index in range(scenario.mediators):
        reuse = ["-reuse-port"] if scenario.one_port else []
        node = NodeProc(["mediator", "-port", str(port), "-id", f"m{index}", *reuse, *common, *setup.mediator_flags],
                        f"etcd mediator {index}")
        mediators.append(node)
        listening = node.wait_listening()
        if scenario.one_port:
            port = listening
        addresses.append(f"127.0.0.1:{listening}")
    for address in addresses:  # on one port each check reaches whichever worker the kernel picks
        wait_cluster(address, setup.streamers)
    return addresses[0] if scenario.one_port else ",".join(addresses)


def report_of(outcome: Outcome, direct: Result | None) -> dict[str, Any]:
    scenarios = [{"name": scenario.name, "mediators": scenario.mediators, "etcd": scenario.etcd,
                  "one_port": scenario.one_port,
                  "results": [{**r.summary(), "mediators_cpu": med, "streamers_cpu": streamers}
                              for r, (med, streamers) in zip(results, cpu)]}
                 for (scenario, results), cpu in zip(outcome.results, outcome.cpu)]
    report: dict[str, Any] = {"scenarios": scenarios,
                              "load_average": {"before": [round(x, 2) for x in outcome.load_before],
                                               "after": [round(x, 2) for x in outcome.load_after]}}
    if direct is not None:
        report["direct"] = direct.summary()
    if outcome.move is not None:
        report["move"] = outcome.move.summary()
    return report


def print_comparison(report: dict[str, Any]) -> None:
    head = report["head"]
    print(f"cluster of {head['streamers']} streamers, {head['clients']} client processes, {head['line_bytes']}-byte "
          f"lines, {head['batch_lines']} lines per batch, {head['keys']:,} keys, {head['cpus']} CPUs; load average "
          f"{' '.join(map(str, report['load_average']['before']))} before, "
          f"{' '.join(map(str, report['load_average']['after']))} after")
    print(f"{'scenario':<32}{'mode':<8}{'lines/s':>13}{'MB/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'calls':>10}{'errors':>8}"
          f"{'mediator CPU':>14}{'streamer CPU':>14}")
    for scenario in report["scenarios"]:
        for row in scenario["results"]:
            print(f"{scenario['name']:<32}{row['mode']:<8}{row['lines_per_s']:>13,}{row['mb_per_s']:>8}"
                  f"{row['p50_ms']:>9}{row['p99_ms']:>9}{row['calls']:>10,}{row['errors']:>8}"
                  f"{row['mediators_cpu']:>14}{row['streamers_cpu']:>14}")
            if row.get("first_error"):
                print(f"{'':<32}first error: {row['first_error']}")
    print("(CPU: cores used by all the mediator, and all the streamer, processes while the mode ran: CPU s / s)")
    if "direct" in report:
        print(f"{'direct append (no node)':<40}{report['direct']['lines_per_s']:>13,}{report['direct']['mb_per_s']:>8}")
    if "move" in report:
        move = report["move"]
        print(f"moving {move['keys']:,} keys between two etcd-mode streamers (median of {move['rounds']} move{'s' if move['rounds'] != 1 else ''}): "
              f"Release {move['release_ms']:,} ms + the next owner's first write (claims) {move['claim_write_ms']:,} ms"
              f" = {move['move_ms']:,} ms: {move['keys_per_s']:,} keys/s, {move['ms_per_key']} ms a key; writing "
              f"them where they are held: {move['held_write_ms']:,} ms ({move['extra_ms_per_key']} ms a key more to move)")
    print(f"lines acknowledged: {report['lines_acked']:,}; lines on disk: {report['lines_on_disk']:,}; "
          f"node exit codes: {report['node_exit_codes']}")
    if "kept_files" in report:
        print(f"files kept in {report['kept_files']} (embedded/ and etcd/ hold the streamers' roots, as the "
              "scenarios ran)")
