"""The torch module of LocallyConnected (netdef/layers/local.py). Imported only when a net is compiled."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class LocallyConnected2d(nn.Module):
    """y[n, o, i, j] = sum over the (i, j) window of x times that position's own kernel, plus bias[o, i, j]:
    the windows unfolded to [N, C*k*k, L], one batched product per position."""

    def __init__(self, channels, num_output, kernel, stride, pad, plane, bias):
        super().__init__()
        self.kernel, self.stride, self.pad, self.plane = kernel, stride, pad, tuple(plane)
        positions = plane[0] * plane[1]
        self.weight = nn.Parameter(torch.empty(positions, num_output, channels * kernel * kernel))
        self.bias = nn.Parameter(torch.empty(num_output, *plane)) if bias else None

    def forward(self, x):
        windows = F.unfold(x, self.kernel, padding=self.pad, stride=self.stride)  # [N, C*k*k, L]
        out = torch.einsum("nkl,lok->nol", windows, self.weight).reshape(x.shape[0], -1, *self.plane)
        return out + self.bias if self.bias is not None else out
