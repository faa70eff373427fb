"""The Axpy layer of SE-ResNet, as a netdef extension layer type.

Hu, Shen and Sun, "Squeeze-and-Excitation Networks" (CVPR 2018); their Caffe models
(github.com/hujie-frank/SENet) add this layer to Caffe to apply the excitation: top = a * x + y, with
a of shape N x C x 1 x 1 (one weight per sample and channel, the SE branch's sigmoid), x the residual branch
and y the shortcut, both N x C x H x W. It scales x channel-wise and adds the shortcut in one layer.

A netdef layer class has the contract of the built-in types (netdef/layers/base.py): counts of bottoms and
tops, a shape rule, a cost and a torch builder. The torch module is a plain module-level class, so that a
compiled net holding it deep-copies and pickles (by reference to this module, importable as `axpy`).
"""
from __future__ import annotations

import torch

from netdef.layers import Layer, ShapeError
from netdef.layers.base import numel


class Axpy(Layer):
    """top = a * x + y: x scaled by a per-sample, per-channel weight a (N x C x 1 x 1), plus y (SE-ResNet)."""
    summary = "a * x + y with a channel-wise scale a of shape N x C x 1 x 1 (SE-ResNet's Axpy)"
    bottoms = (3, 3)  # a, x, y

    def infer(self, shapes):
        a, x, y = (tuple(shape) for shape in shapes)
        if x != y:
            raise ShapeError("Axpy's x and y (bottoms 2 and 3) must have equal shapes", expected=f"shape {list(x)}",
                             found=f"shape {list(y)}", path=("bottom", 2))
        if len(x) < 2 or a != x[:2] + (1,) * (len(x) - 2):
            raise ShapeError("Axpy's a (bottom 1) holds one weight per sample and channel of x",
                             expected=f"shape {list(x[:2] + (1,) * (len(x) - 2))}", found=f"shape {list(a)}",
                             path=("bottom", 0))
        return [x]

    def macs(self, shapes, outs):
        return numel(outs[0])  # one multiply-add per output element

    def build(self, shapes):
        return AxpyModule()


class AxpyModule(torch.nn.Module):
    """top = a * x + y; `a` (N x C x 1 x 1) broadcasts over x's spatial axes, and autograd gives Caffe's
    three gradients (dy = dtop, dx = a * dtop, da = the sum of x * dtop over each channel's positions)."""

    def forward(self, a, x, y):
        return torch.addcmul(y, a, x)
