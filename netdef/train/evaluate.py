"""Caffe's test pass, shared by the solver's tests (Solver::Test) and `netdef test` (caffe test)."""
from __future__ import annotations

import contextlib

import torch


def evaluate(net, feed, iterations: int, *, autocast=contextlib.nullcontext, on_batch=None, interrupted=None):
    """`iterations` forward passes of `net` on `feed`'s batches, without gradients: every output's mean over
    them (float tensors, on the net's device). `on_batch(index, outputs)` sees each batch's outputs (`netdef
    test` prints them); `interrupted()` is asked before each batch, and when it says so the pass ends
    early and returns None. `autocast` gives the context each forward pass runs in."""
    sums = {}
    with torch.no_grad():
        for index in range(iterations):
            if interrupted is not None and interrupted():
                return None
            with autocast():
                outputs = net(**feed.next())
            if on_batch is not None:
                on_batch(index, outputs)
            for blob, value in outputs.items():
                value = value.detach().float()
                sums[blob] = value if blob not in sums else sums[blob] + value
    return {blob: total / iterations for blob, total in sums.items()}
