"""torch.nn modules of the layers past Caffe (modern.py, attention.py) that PyTorch has no exact module for.
Imported only when a net is compiled, so that `netdef check` and `summary` never import torch."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .modules import CaffeBatchNorm, _broadcast_shape


class AffineBatchNorm(CaffeBatchNorm):
    """Caffe's BatchNorm (its three statistics blobs, kept as Caffe keeps them) followed by a learnt
    per-channel scale and bias: NVIDIA Caffe's `scale_bias`, PyTorch's affine batch norm."""

    def __init__(self, channels, eps, moving_average_fraction, use_global_stats):
        super().__init__(channels, eps, moving_average_fraction, use_global_stats)
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))

    def forward(self, x):
        view = _broadcast_shape(x.shape, 1, 1)
        return torch.addcmul(self.bias.reshape(view), super().forward(x), self.weight.reshape(view))


class Resize(nn.Module):
    """F.interpolate to a fixed size, after cropping `crop` = (top, bottom, left, right) rows and columns
    (DeepLab's negative pad_beg/pad_end)."""

    def __init__(self, size, mode, align_corners, crop=(0, 0, 0, 0)):
        super().__init__()
        self.size, self.mode, self.align_corners, self.crop = tuple(size), mode, align_corners, crop

    def forward(self, x):
        top, bottom, left, right = self.crop
        if any(self.crop):
            x = x[..., top:x.shape[-2] - bottom, left:x.shape[-1] - right]
        return F.interpolate(x, self.size, mode=self.mode, align_corners=self.align_corners)


class ShuffleChannel(nn.Module):
    def __init__(self, group):
        super().__init__()
        self.group = group

    def forward(self, x):
        n, c = x.shape[:2]  # reshape and transpose rather than F.channel_shuffle, which ONNX cannot export
        return x.reshape(n, self.group, c // self.group, *x.shape[2:]).transpose(1, 2).reshape(x.shape)


class Permute(nn.Module):
    def __init__(self, order):
        super().__init__()
        self.order = tuple(order)

    def forward(self, x):
        return x.permute(self.order)


class MatMul(nn.Module):
    """torch.matmul of the two bottoms, either transposed in its last two axes first."""

    def __init__(self, transpose_a, transpose_b):
        super().__init__()
        self.transpose_a, self.transpose_b = transpose_a, transpose_b

    def forward(self, a, b):
        return torch.matmul(a.mT if self.transpose_a else a, b.mT if self.transpose_b else b)


class Parameter(nn.Module):
    """A learnt blob as a top; it has no bottom, so forward takes nothing."""

    def __init__(self, shape):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(shape))

    def forward(self):
        return self.weight.clone()  # a top of its own: a layer working in place on it must not change the blob


class Tile(nn.Module):
    def __init__(self, axis, tiles):
        super().__init__()
        self.axis, self.tiles = axis, tiles

    def forward(self, x):
        repeats = [1] * x.dim()
        repeats[self.axis] = self.tiles
        return x.repeat(repeats)


class MultiHeadAttention(nn.Module):
    """Vaswani et al.'s multi-head attention on batch-first tokens (N, L, E): one (3E, E) projection for
    query, key and value as ViT and nn.MultiheadAttention store it, then softmax(q k^T / sqrt(E/h)) v per
    head and an (E, E) output projection. The products are plain matmuls (no fused kernel), so that their
    cost is what torch's FLOP counter and the layer's MACs both see."""

    def __init__(self, embed, heads, bias, dropout):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed, embed))
        self.out_proj_weight = nn.Parameter(torch.empty(embed, embed))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed)) if bias else None
        self.out_proj_bias = nn.Parameter(torch.empty(embed)) if bias else None

    def _heads(self, x):
        n, length, embed = x.shape
        return x.reshape(n, length, self.heads, embed // self.heads).transpose(1, 2)

    def forward(self, query, key=None, value=None):
        key = query if key is None else key
        value = key if value is None else value
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None,) * 3
        q, k, v = (self._heads(F.linear(x, w, b)) for x, w, b in ((query, w_q, b_q), (key, w_k, b_k), (value, w_v, b_v)))
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        weights = F.dropout(F.softmax(scores, -1), self.dropout, self.training)
        mixed = torch.matmul(weights, v).transpose(1, 2).flatten(2)
        return F.linear(mixed, self.out_proj_weight, self.out_proj_bias)
