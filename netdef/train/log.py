"""Caffe's log text, line for line (so that Caffe's tools/extra/parse_log.py patterns apply): the net set-up
lines, the output lines of training, testing and `netdef test`, and where the lines go (stdout, above the
progress bar while one runs, and the run folder's log file with glog's prefix). The terminal gets each net's
set-up as one line (`setup_summary`); the per-layer lines go to the log file alone."""
from __future__ import annotations

import collections
import contextlib
import os
import sys
import time
from datetime import datetime

import torch

from ..layers.base import numel
from ..text import memory

TIMED_TEST_BATCHES = 10  # a test pass of at least this many batches says how long it will take


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


def setup_summary(what: str, info) -> str:
    """`Training net lenet (TRAIN): 9 layers, 431,080 parameters, activations 2.3 MiB per batch`: the
    summary's totals (netdef summary), the terminal's stand-in for a net's per-layer set-up lines."""
    return (f"{what} {info.graph.name} ({info.graph.state.phase}): {len(info.layers)} layers, "
            f"{info.total_params:,} parameters, activations {memory(info.total_memory)} per batch")


def test_estimate_line(index: int, seconds: float, batches: int) -> str:
    """`Test net #0: about 1,234 s for 1000 batches (test_iter)`."""
    shown = f"{seconds:.2g}" if seconds < 10 else f"{seconds:,.0f}"
    return f"Test net #{index}: about {shown} s for {batches} batches (test_iter)"


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


def peak_resident_bytes() -> int:
    """This process's peak resident set: Linux's VmHWM, not ru_maxrss, which survives exec and would report a
    large parent's peak (pytest's, a launcher's) as ours."""
    from ..tools.resources import process_memory
    peak = process_memory("VmHWM")
    if peak is None:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # in KiB, as on Linux
    return peak


def peak_memory_line(device) -> str:
    """`Peak memory: 812.3 MiB resident` (and the device's peak allocation on a GPU): for the run's report."""
    line = f"Peak memory: {memory(peak_resident_bytes())} resident"
    if device.type == "cuda":
        line += f", {memory(torch.cuda.max_memory_allocated(device))} allocated on {device}"
    return line


def glog_line(when: datetime, text: str) -> str:
    """`I20261202 07:24:58.979697 22993 netdef:0] text`: glog's prefix, as Caffe's log files carry it, so
    that the time of every line is kept and Caffe's parse_log.py reads netdef's log file as it reads Caffe's."""
    return f"I{when:%Y%m%d %H:%M:%S.%f} {os.getpid():5d} netdef:0] {text}"


class Log:
    """Prints log lines; while `progress()` runs a tqdm bar (in a terminal only), above the bar. After
    `keep_in(path)` every line, from the first, also goes to that file (with glog's prefix). Without a
    terminal, `progress_line()` prints where the run is instead of the bar."""

    def __init__(self):
        self.bar = None
        self.file = None
        self.pending = collections.deque(maxlen=100_000)  # (time, text) of the lines before keep_in
        self.started = None  # (time, iteration, max_iter) of the running progress()
        self.estimated = set()  # the test nets whose pass length has been logged (once a run)

    def __call__(self, text: str) -> None:
        self.record(text)
        self.show(text)

    def show(self, text: str) -> None:
        """On the terminal only (above the bar while one runs)."""
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
        self.started = (time.perf_counter(), initial, total)
        try:
            yield self.bar
        finally:
            self.bar.close()
            self.bar = None
            self.started = None

    def advance(self) -> None:
        """One iteration done."""
        if self.bar is not None:
            self.bar.update(1)

    def progress_line(self, iteration: int) -> None:
        """`Progress: 500/10000 iterations (5%), 41.2 iter/s, ETA 03:50` on a stdout that is not a terminal
        (a terminal has the bar): the rate since this run's first iteration, tests and snapshots included,
        so that the ETA holds. Not in the log file, whose lines carry their times."""
        if self.started is None or not self.bar.disable:
            return
        from tqdm import tqdm
        began, initial, total = self.started
        done, lapse = iteration - initial, time.perf_counter() - began
        if done <= 0 or lapse <= 0:
            return
        rate = done / lapse
        self.show(f"Progress: {iteration}/{total} iterations ({100 * iteration // max(total, 1)}%), "
                  f"{rate:.3g} iter/s, ETA {tqdm.format_interval((total - iteration) / rate)}")

    @contextlib.contextmanager
    def test_progress(self, index: int, batches: int):
        """A test pass's own bar (in a terminal only), under the training bar; yields `on_batch(k)`, to be
        called after each batch: it moves the bar and, for a pass of TIMED_TEST_BATCHES or more, logs (the
        first time in the run) how long the pass will take, timed on the batches after the first (which pays for warming up)."""
        from tqdm import tqdm
        bar = tqdm(total=batches, disable=not sys.stdout.isatty(), unit="batch", desc=f"test #{index}",
                   dynamic_ncols=True, leave=False)
        began, first_done = time.perf_counter(), None
        timed = min(batches - 1, 3)  # batches after the first that the estimate is timed on

        def on_batch(k: int) -> None:
            nonlocal first_done
            bar.update(1)
            if batches < TIMED_TEST_BATCHES or index in self.estimated:
                return
            if k == 0:
                first_done = time.perf_counter()
            elif k == timed:
                per_batch = (time.perf_counter() - first_done) / timed
                self.estimated.add(index)
                self(test_estimate_line(index, first_done - began + per_batch * (batches - 1), batches))
        try:
            yield on_batch
        finally:
            bar.close()
