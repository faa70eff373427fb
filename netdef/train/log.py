"""Caffe's log text, line for line (so that Caffe's tools/extra/parse_log.py patterns apply): the net set-up
lines, the output lines of training, testing and `netdef test`, and where the lines go (stdout, above the
progress bar while one runs, and the run folder's log file with glog's prefix)."""
from __future__ import annotations

import collections
import contextlib
import os
import sys
from datetime import datetime

import torch

from ..layers.base import numel


def setup_lines(info) -> list:
    """A net (a NetInfo) as Caffe's Net::Init logs it: every layer's top shapes, loss weights and the
    running total of top memory (4-byte elements, every top counted, in-place ones too, as Caffe counts)."""
    lines, memory = [], 0
    for spec, row in zip(info.graph.layers, info.layers):
        lines.append(f"Setting up {row.name}")
        for shape, weight in zip(row.shapes, spec.loss_weights):
            count = numel(shape)
            lines.append(f"Top shape: {''.join(f'{d} ' for d in shape)}({count})")
            if weight:
                lines.append(f"    with loss weight {weight:g}")
            memory += count
        lines.append(f"Memory required for data: {memory * 4}")
    return lines


def output_values(outputs: dict, loss_weights: dict) -> list:
    """(blob, value, loss weight) for every element of every output blob, in output order (one read-back)."""
    flat = [(blob, value.detach().float().flatten()) for blob, value in outputs.items()]
    if not flat:
        return []
    values = torch.cat([v for _, v in flat]).tolist()
    rows, start = [], 0
    for blob, tensor in flat:
        for value in values[start:start + tensor.numel()]:
            rows.append((blob, value, loss_weights.get(blob, 0.0)))
        start += tensor.numel()
    return rows


def output_text(blob: str, value: float, weight: float) -> str:
    """`loss = 0.21 (* 1 = 0.21 loss)`: an output, and its contribution when it carries a loss weight."""
    note = f" (* {weight:g} = {value * weight:.6g} loss)" if weight else ""
    return f"{blob} = {value:.6g}{note}"


def output_line(kind: str, index: int, blob: str, value: float, weight: float) -> str:
    """`    Train net output #0: loss = 0.21 (* 1 = 0.21 loss)`, as Caffe writes it."""
    return f"    {kind} net output #{index}: {output_text(blob, value, weight)}"


def epoch_line(feed, iter_size: int) -> str | None:
    """`Epoch: 5000 samples, 64 per iteration` from the TRAIN net's first reader (the epoch axis of
    `netdef plot`); None for a reader that does not know its size (a stream)."""
    if not feed.sources:
        return None
    reader = feed.sources[0][1]
    size, batch = getattr(reader, "size", None), getattr(reader, "batch_size", None)
    if not size or not batch:
        return None
    return f"Epoch: {size} samples, {batch * iter_size} per iteration"


def peak_memory_line(device) -> str:
    """`Peak memory: 812.3 MiB resident` (and the device's peak allocation on a GPU): for the run's report."""
    import resource
    from ..text import memory
    resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux counts KiB
    line = f"Peak memory: {memory(resident)} resident"
    if device.type == "cuda":
        line += f", {memory(torch.cuda.max_memory_allocated(device))} allocated on {device}"
    return line


def glog_line(when: datetime, text: str) -> str:
    """`I20261202 07:24:58.979697 22993 netdef:0] text`: glog's prefix, as Caffe's log files carry it, so
    that the time of every line is kept and Caffe's parse_log.py reads netdef's log file as it reads Caffe's."""
    return f"I{when:%Y%m%d %H:%M:%S.%f} {os.getpid():5d} netdef:0] {text}"


class Log:
    """Prints log lines; while `progress()` runs a tqdm bar (in a terminal only), above the bar. After
    `keep_in(path)` every line, from the first, also goes to that file (with glog's prefix)."""

    def __init__(self):
        self.bar = None
        self.file = None
        self.pending = collections.deque(maxlen=100_000)  # (time, text) of the lines before keep_in

    def __call__(self, text: str) -> None:
        self.record(text)
        if self.bar is not None and not self.bar.disable:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def record(self, text: str) -> None:
        """Into the log file only (or kept for it until keep_in)."""
        if self.file is None:
            self.pending.append((datetime.now(), text))
        else:
            self.file.write(glog_line(datetime.now(), text) + "\n")
            self.file.flush()

    def keep_in(self, path) -> None:
        """Append every line, the earlier ones first, to `path` (a resumed run adds to its run's log)."""
        self.file = open(path, "a", encoding="utf-8")
        for when, text in self.pending:
            self.file.write(glog_line(when, text) + "\n")
        self.file.flush()
        self.pending.clear()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    @contextlib.contextmanager
    def progress(self, total: int, initial: int):
        from tqdm import tqdm
        self.bar = tqdm(total=total, initial=initial, disable=not sys.stdout.isatty(), unit="iter",
                        dynamic_ncols=True, leave=False)
        try:
            yield self.bar
        finally:
            self.bar.close()
            self.bar = None

    def advance(self) -> None:
        """One iteration done."""
        if self.bar is not None:
            self.bar.update(1)
