"""Caffe's log text, line for line (so that Caffe's tools/extra/parse_log.py patterns apply): the net set-up
lines, the output lines of training, testing and `netdef test`, and where the lines go (stdout, above the
progress bar while one runs)."""
from __future__ import annotations

import contextlib
import sys

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


class Log:
    """Prints log lines; while `progress()` runs a tqdm bar (in a terminal only), above the bar."""

    def __init__(self):
        self.bar = None

    def __call__(self, text: str) -> None:
        if self.bar is not None and not self.bar.disable:
            self.bar.write(text)
        else:
            print(text, flush=True)

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
