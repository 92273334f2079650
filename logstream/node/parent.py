"""A node that must not outlive the supervisord that started it: Linux's parent-death signal."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable, Mapping

# Set by `logstream run` for its nodes (supervisor/render.py): the signal a node gets when its
# supervisord dies, however it dies (SIGKILL too), so that no node outlives the run.
PARENT_DEATH_ENV = "LOGSTREAM_PARENT_DEATH_SIGNAL"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def prctl_function() -> Callable[..., int] | None:
    """libc's prctl, resolved now (so that a forked child only calls it); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    function: Callable[..., int] = libc.prctl
    return function


def set_parent_death_signal(prctl: Callable[..., int], signum: int) -> None:
    """This process gets `signum` when its parent dies; OSError if the kernel refuses."""
    if prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def die_with_parent_if_asked(environ: Mapping[str, str] | None = None) -> None:
    """When PARENT_DEATH_ENV names a signal (`TERM`), get it as the parent dies; an orphan already
    (the parent died before this ran) gets it now. Called once the node's handlers are installed."""
    name = (os.environ if environ is None else environ).get(PARENT_DEATH_ENV, "")
    prctl = prctl_function() if name else None
    if prctl is None:
        return
    signum = signal.Signals[f"SIG{name.upper().removeprefix('SIG')}"]
    parent = os.getppid()
    set_parent_death_signal(prctl, signum)
    if parent == 1:  # reparented to init: the parent is already gone and no signal will come
        os.kill(os.getpid(), signum)
