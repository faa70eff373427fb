"""How many CPU threads a training process takes, and how its OpenMP threads wait, for the cores actually
free: torch's default (a thread per core, each spinning while it waits for work) collapses on a busy
machine, where the spinning threads fight the other processes for the cores (issue 12: 305 CPU-seconds on
a loaded 2-core machine for a run that takes 87 in Caffe).

Imports no torch: OpenMP reads OMP_NUM_THREADS and OMP_WAIT_POLICY once, when torch loads it, so
`choose_threads()` runs before the first `import torch` of `netdef train`.
"""
from __future__ import annotations

import os
import sys

from ..text import counted


def free_cores(cores: int) -> float:
    """The cores the rest of the machine leaves: `cores` minus the 1-minute load average (which, before
    this process trains, is the others' work)."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this system: assume an idle machine
        load = 0.0
    return max(0.0, cores - load)


def choose_threads(environ=None) -> str | None:
    """Set OMP_NUM_THREADS (unless given) to this process's share of the cores it may run on (affinity,
    divided among the LOCAL_WORLD_SIZE ranks of this machine) capped by the free cores, and on a busy
    machine OMP_WAIT_POLICY=PASSIVE (unless given) so that waiting threads sleep instead of spinning.
    Returns the line the log shows, or None when the environment already decided both, or when torch is
    loaded already (netdef called from Python: the caller's process, the caller's threads)."""
    environ = os.environ if environ is None else environ
    if "torch" in sys.modules:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = max(1, cores // max(1, int(environ.get("LOCAL_WORLD_SIZE", "1"))))
    free = free_cores(cores)
    threads = max(1, min(share, int(free + 0.5)))
    busy = free < share
    notes = []
    if "OMP_NUM_THREADS" not in environ:
        environ["OMP_NUM_THREADS"] = str(threads)
        notes.append(f"{counted(threads, 'CPU thread')} ({counted(share, 'core')} for this process, "
                     f"{free:.1f} free by the load average; set OMP_NUM_THREADS to choose)")
    if busy and "OMP_WAIT_POLICY" not in environ:
        environ["OMP_WAIT_POLICY"] = "PASSIVE"
        notes.append("waiting OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE: the machine is busy)")
    return "Threads: " + "; ".join(notes) if notes else None
