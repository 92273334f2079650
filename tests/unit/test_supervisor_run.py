"""The run loop's parts: following node logs across rotations, the prefixing printer, port checks."""

from __future__ import annotations

import io
import socket
from pathlib import Path

from logstream.cluster import load_cluster, plan_nodes
from logstream.supervisor.printer import Printer
from logstream.supervisor.process import Follower, busy_ports


def test_follower_reads_complete_lines_from_now_on(tmp_path: Path) -> None:
    log = tmp_path / "s1.log"
    log.write_text("from an earlier run\n")
    follower = Follower(log)
    assert follower.poll() == []
    with log.open("a") as out:
        out.write("one\ntw")
    assert follower.poll() == ["one"]
    with log.open("a") as out:
        out.write("o\n")
    assert follower.poll() == ["two"]
    follower.close()


def test_follower_waits_for_the_file_and_reads_it_all(tmp_path: Path) -> None:
    log = tmp_path / "late.log"
    follower = Follower(log)
    assert follower.poll() == []
    log.write_text("first\n")
    assert follower.poll() == ["first"]
    follower.close()


def test_follower_survives_rotation_and_truncation(tmp_path: Path) -> None:
    log = tmp_path / "s1.log"
    log.write_text("")
    follower = Follower(log)
    follower.poll()
    with log.open("a") as out:
        out.write("before\nlast of old\n")
    log.rename(tmp_path / "s1.log.1")  # supervisord's rotation: rename, then a new file
    log.write_text("new\n")
    assert follower.poll() == ["before", "last of old", "new"]
    log.write_text("")  # truncated in place
    assert follower.poll() == []
    with log.open("a") as out:
        out.write("again\nunfinished")
    assert follower.poll() == ["again"]
    assert follower.poll(final=True) == ["unfinished"]
    follower.close()


def test_printer_pads_names_like_honcho() -> None:
    out = io.StringIO()
    printer = Printer(["supervisord", "s1"], out, colour=False)
    printer.line("s1", "hello")
    printer.say("ready")
    assert out.getvalue() == "s1          | hello\nlogstream: ready\n"
    coloured = io.StringIO()
    Printer(["s1"], coloured, colour=True).line("s1", "x")
    assert coloured.getvalue().startswith("\033[") and coloured.getvalue().endswith("s1 | \033[0mx\n")


def test_busy_ports_names_the_node(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = load_cluster(None, ["streamers.count=1", f"streamer.s1.port={port}", "mediator.port=1"],
                              environ={})
        nodes = [node for node in plan_nodes(config, tmp_path) if node.name == "s1"]
        assert busy_ports(nodes) == [f"streamer s1: port 127.0.0.1:{port} is already in use by another process"]
    config = load_cluster(None, ["streamers.count=1", "streamers.host=192.0.2.1"], environ={})
    nodes = [node for node in plan_nodes(config, tmp_path) if node.name == "s1"]
    assert "192.0.2.1 is not an address of this machine" in busy_ports(nodes)[0]
