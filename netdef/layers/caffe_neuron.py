"""Caffe's remaining elementwise layers: BNLL, Threshold, Clip and Swish (bnll_layer.cpp, threshold_layer.cpp,
clip_layer.cpp, swish_layer.cpp). One bottom, one top of the same shape, as every neuron layer."""
from __future__ import annotations

from ..fields import Float
from .base import register
from .neuron import _Neuron, _Uncounted


@register
class BNLL(_Uncounted):
    """Binomial normal log likelihood: y = log(1 + exp(x)), computed stably (x + log(1 + exp(-x)) for x > 0)."""
    summary = "log(1 + exp(x)) (softplus)"

    def module(self):
        import torch.nn as nn
        return nn.Softplus()


@register
class Threshold(_Neuron):
    """y = 1 where x > threshold, else 0. A step: no gradient flows through it (Caffe's has no backward)."""
    summary = "step: 1 where x > threshold, else 0"
    blocks = {"threshold_param": {"threshold": Float(0.0, "inputs above it give 1")}}
    drawn_fields = ("threshold",)

    def module(self):
        from .catalogue_modules import Threshold as Module
        return Module(self.p["threshold"])


@register
class Clip(_Neuron):
    """y = min(max(x, min), max); the gradient passes where min <= x <= max."""
    summary = "clamp to [min, max]"
    blocks = {"clip_param": {"min": Float(None, "lower bound", required=True),
                             "max": Float(None, "upper bound", required=True)}}
    drawn_fields = ("min", "max")

    def check(self):
        if self.p["min"] is not None and self.p["max"] is not None and self.p["min"] > self.p["max"]:
            yield (("clip_param", "max"), "'max' must not be below 'min'", f">= {self.p['min']:g}", f"{self.p['max']:g}")

    def module(self):
        from .catalogue_modules import Clip as Module
        return Module(self.p["min"], self.p["max"])


@register
class Swish(_Uncounted):
    """y = x * sigmoid(beta * x) (Ramachandran et al.)."""
    summary = "x sigmoid(beta x)"
    blocks = {"swish_param": {"beta": Float(1.0, "slope inside the sigmoid")}}
    drawn_fields = ("beta",)

    def module(self):
        from .catalogue_modules import Swish as Module
        return Module(self.p["beta"])
