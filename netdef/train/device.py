"""Where and how a net runs: the device (`device: auto|cpu|cuda|cuda:N`), the weights' memory layout, and
the forward passes' precision (`precision: fp32|bf16|fp16`: autocast, with a gradient scaler for fp16)."""
from __future__ import annotations

import contextlib

import torch

from ..errors import NetdefError, Problem

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str, pos=None) -> torch.device:
    """`auto` is the first GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise NetdefError(Problem(f"unknown device '{name}'", pos, expected="auto, cpu, cuda or cuda:N"))
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise NetdefError(Problem(f"device '{name}' is not available", pos,
                                      expected=f"one of {count} CUDA devices" if count else "cpu (this machine "
                                      "has no CUDA device)"))
    return device


def memory_format(device: torch.device, precision: str):
    """Channels-last (NHWC) weights: measured 25-30% faster for LeNet on CPU (oneDNN; tools/bench_lenet.py);
    on CUDA it pays with tensor cores (bf16/fp16), while fp32 keeps PyTorch's default (not measured here)."""
    if device.type == "cpu" or precision != "fp32":
        return torch.channels_last
    return torch.contiguous_format


def autocast(device: torch.device, precision: str):
    """A function giving the context forward passes run in: torch.autocast for bf16 and fp16."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str):
    """fp16 gradients underflow without loss scaling: torch's GradScaler, or None for fp32 and bf16."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


class CompiledOrEager:
    """`compile: true`: the training passes through torch.compile(module), which compiles at the first
    pass; a net that cannot compile (a layer torch.compile does not support, no C++ compiler for the CPU
    backend) trains on `module` itself after `note(text)` says why. Keeps DDP's no_sync reachable."""

    def __init__(self, module, note):
        self.module, self.note = module, note
        self.compiled = torch.compile(module)
        self.first = True
        if hasattr(module, "no_sync"):
            self.no_sync = module.no_sync

    def __call__(self, **inputs):
        if self.compiled is None:
            return self.module(**inputs)
        if not self.first:
            return self.compiled(**inputs)
        self.first = False
        try:
            return self.compiled(**inputs)
        except Exception as exc:  # noqa: BLE001  (any compiler failure: the eager module still trains)
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.note(f"compile: true: torch.compile could not compile this net ({type(exc).__name__}: "
                      f"{message[:300]}); training runs eagerly")
            self.compiled = None
            return self.module(**inputs)
