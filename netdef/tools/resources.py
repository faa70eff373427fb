"""Memory a net needs before any tensor exists, and the refusal of a net that would not fit.

The estimate for training, from the summary's figures (float32, 4 bytes a value): every parameter three
times (the weight, its gradient and one history blob, as SGD with momentum keeps), and every new top
twice (its value, kept for backward, and its gradient). Testing needs the parameters and the tops once.
It ignores what PyTorch's allocator and kernels add, so it is a floor: a net that does not fit under it
cannot fit at all.
"""
from __future__ import annotations

import os
import re

from ..errors import NetdefError, Problem
from ..front.infer import BYTES_PER_ELEMENT, NetInfo
from ..text import memory

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*$")
_UNITS = {"": 1, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40}


def parse_size(text: str) -> int:
    """'8G', '512MiB', '1.5 GB', '1000000' -> bytes (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise NetdefError(Problem(f"cannot read the memory size '{text}'", expected="a size such as 8G, 512M or 1.5GiB"))
    return int(float(match[1]) * _UNITS[match[2].lower()])


def machine_memory() -> int | None:
    """This machine's RAM in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def process_memory(field: str) -> int | None:
    """A memory figure of this process from Linux's /proc/self/status, in bytes: `VmHWM` (the peak resident
    set, which starts afresh at exec, unlike ru_maxrss) or `VmSize` (the address space RLIMIT_AS limits);
    None where the system does not say."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            match = re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.M)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def device_memory(device) -> int | None:
    """The memory of a torch device: the GPU's for CUDA, this machine's RAM for the CPU."""
    if getattr(device, "type", "cpu") == "cuda":
        import torch
        return torch.cuda.get_device_properties(device).total_memory
    return machine_memory()


def needed_bytes(info: NetInfo, training: bool) -> int:
    """The floor of the memory one forward (and, training, backward and update) of `info`'s batch needs."""
    parameters = info.total_params * BYTES_PER_ELEMENT
    return parameters * 3 + info.total_memory * 2 if training else parameters + info.total_memory


def refuse_if_too_big(info: NetInfo, limit: int | None, training: bool, where: str = "this machine's memory"):
    """Raise a NetdefError naming the largest layers when `info` needs more than `limit` bytes."""
    needed = needed_bytes(info, training)
    if limit is None or needed <= limit:
        return
    largest = sorted(info.layers, key=lambda row: row.memory, reverse=True)[:3]
    names = ", ".join(f"{row.name} {memory(row.memory)}" for row in largest)
    batch = ", ".join(f"{blob} {list(info.blob_shapes[blob])}" for blob in info.graph.inputs)
    raise NetdefError(Problem(
        f"{info.graph.name} ({info.graph.state.phase}) needs at least {memory(needed)} to "
        f"{'train' if training else 'run'} (inputs {batch}), more than {memory(limit)} ({where})",
        hint=f"the largest tops: {names}; lower the batch size (the data layers' batch_size; --batch in summary), or set "
             "--max-memory if the estimate is wrong"))
