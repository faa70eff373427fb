"""torch.nn modules for the parts of Caffe's existing layers that the plain modules (modules.py) leave out:
STOCHASTIC pooling, MAX pooling's mask top and Accuracy's per-class top (pooling_layer.cu,
pooling_layer.cpp, accuracy_layer.cpp). Imported only when a net is compiled."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .modules import Accuracy, _labels


def _windows(x, kernel, stride, out_size):
    """Every pooling window of x (N, C, H, W), unpadded, as (N, C, kh * kw, oh * ow), row-major within the
    window. Caffe's ceil rounding lets the last windows run past the input ((oh - 1) * sh + kh >= H): they
    are clipped, their missing cells read as 0 (they add nothing to a window's sums)."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out_size
    n, c, h, w = x.shape
    x = F.pad(x, (0, (ow - 1) * sw + kw - w, 0, (oh - 1) * sh + kh - h))
    return F.unfold(x.reshape(n * c, 1, *x.shape[2:]), (kh, kw), stride=(sh, sw)).reshape(n, c, kh * kw, oh * ow)


class StochasticPool2d(nn.Module):
    """Caffe's STOCHASTIC pooling (its GPU kernels; no padding). TRAIN: in each window, draw u ~ U[0, 1) and
    take the first cell (row-major) at which the running sum reaches u * (sum of the window): a cell is
    picked with probability proportional to its activation; the gradient goes to that cell. TEST: the
    activation-weighted average sum(x^2) / sum(x), 0 where the window sums to 0 or less."""

    def __init__(self, kernel, stride, out_size):
        super().__init__()
        self.kernel, self.stride, self.out_size = kernel, stride, out_size

    def forward(self, x):
        windows = _windows(x, self.kernel, self.stride, self.out_size)
        running = windows.cumsum(2)
        total = running[:, :, -1:]  # summed in the order of the running sum, as Caffe's two passes do
        if self.training:
            threshold = torch.rand_like(total) * total
            picked = (running >= threshold).to(torch.uint8).argmax(2, keepdim=True)  # the first
            out = windows.gather(2, picked)
        else:
            positive = total > 0
            out = torch.where(positive, (windows * windows).sum(2, keepdim=True) / torch.where(positive, total, 1), 0)
        return out.reshape(*x.shape[:2], *self.out_size)


class MaxPoolWithMask(nn.Module):
    """MAX pooling with Caffe's second top: the index h * W + w, within its input plane, of each window's
    maximum (the first in row-major order on ties), as a float. Pads explicitly with -inf (padding never
    wins) so that any padding Caffe allows (pad < kernel) works, and crops to Caffe's output size."""

    def __init__(self, kernel, stride, pad, out_size):
        super().__init__()
        self.kernel, self.stride, self.pad, self.out_size = kernel, stride, pad, out_size

    def forward(self, x):
        (ph, pw), (oh, ow) = self.pad, self.out_size
        width = x.shape[3]
        padded = F.pad(x, (pw, pw, ph, ph), value=-math.inf)
        out, index = F.max_pool2d(padded, self.kernel, self.stride, 0, ceil_mode=True, return_indices=True)
        out, index = out[..., :oh, :ow], index[..., :oh, :ow]
        row, col = index // padded.shape[3] - ph, index % padded.shape[3] - pw
        return out, (row * width + col).to(x.dtype)


class AccuracyPerClass(Accuracy):
    """Accuracy with Caffe's second top: for each class, the fraction of its (non-ignored) samples that are
    hits; 0 for a class without samples."""

    def __init__(self, top_k, axis, ignore_label, classes):
        super().__init__(top_k, axis, ignore_label)
        self.classes = classes

    def forward(self, scores, label):
        with torch.no_grad():
            target = _labels(scores, label, self.axis)
            hit = (scores.topk(self.top_k, self.axis).indices == target.unsqueeze(self.axis)).any(self.axis)
            valid = target != self.ignore_label if self.ignore_label is not None else torch.ones_like(hit)
            counted, hits = target[valid], hit[valid].to(scores.dtype)
            samples = torch.bincount(counted, minlength=self.classes).to(scores.dtype)
            right = torch.bincount(counted, weights=hits, minlength=self.classes).to(scores.dtype)
            per_class = torch.where(samples > 0, right / samples.clamp_min(1), 0)
        return super().forward(scores, label), per_class
