"""Elementwise "neuron" layers: one bottom, one top of the same shape, in-place safe. Nonlinearities count
0 MACs (the summary's conventions); those with multiplies or powers netdef does not model are not counted."""
from __future__ import annotations

from ..fields import Bool, Enum, Float
from .fillers import FillerField, fill_blobs
from .base import Layer, ShapeError, register

_ENGINE = {"engine": Enum(["DEFAULT", "CAFFE", "CUDNN"], "DEFAULT", "accepted for Caffe compatibility")}


class _Neuron(Layer):
    kind = "neuron"

    def module(self):
        raise NotImplementedError

    def build(self, shapes):
        return self.module()


class _Uncounted(_Neuron):
    """A neuron whose multiplies (or powers) per element are not counted."""

    def macs(self, shapes, outs):
        return None


@register
class ReLU(_Neuron):
    """y = max(0, x) + negative_slope * min(0, x)."""
    summary = "rectifier, leaky with negative_slope"
    blocks = {"relu_param": {"negative_slope": Float(0.0, "slope for x < 0"), **_ENGINE}}
    drawn_fields = ("negative_slope",)

    def module(self):
        import torch.nn as nn
        slope = self.p["negative_slope"]
        return nn.LeakyReLU(slope) if slope else nn.ReLU()


@register
class PReLU(_Uncounted):
    """y = max(0, x) + a_c * min(0, x) with a learnt slope per channel (or one shared)."""
    summary = "learnt leaky rectifier"
    blocks = {"prelu_param": {"filler": FillerField("slope initialisation", default_value=0.25),
                              "channel_shared": Bool(False, "one slope for all channels")}}

    def param_names(self):
        return ("weight",)

    def blob_specs(self, shapes):
        if len(shapes[0]) < 2 and not self.p["channel_shared"]:
            raise ShapeError("PReLU needs a channel axis", expected="at least 2 axes", found=f"shape {list(shapes[0])}")
        return self.blob_list(weight=((1,) if self.p["channel_shared"] else (shapes[0][1],), self.p["filler"]))

    def build(self, shapes):
        from .modules import PReLU as Module
        blobs = self.blob_specs(shapes)
        return fill_blobs(Module(blobs[0].shape[0]), blobs)


@register
class ELU(_Neuron):
    """y = x if x > 0 else alpha * (exp(x) - 1)."""
    summary = "exponential linear unit"
    blocks = {"elu_param": {"alpha": Float(1.0, "saturation value for x < 0")}}
    drawn_fields = ("alpha",)

    def module(self):
        import torch.nn as nn
        return nn.ELU(self.p["alpha"])


@register
class Sigmoid(_Neuron):
    """y = 1 / (1 + exp(-x))."""
    summary = "logistic function"
    blocks = {"sigmoid_param": dict(_ENGINE)}

    def module(self):
        import torch.nn as nn
        return nn.Sigmoid()


@register
class TanH(_Neuron):
    """y = scale_out * tanh(scale_in * x); Caffe's plain tanh by default, LeCun's 1.7159 tanh(2x/3) with
    scale_out 1.7159 and scale_in 0.6667."""
    summary = "hyperbolic tangent, optionally scaled (LeNet-5's 1.7159 tanh(2a/3))"
    blocks = {"tanh_param": {"scale_in": Float(1.0, "multiplies the input (netdef)"),
                             "scale_out": Float(1.0, "multiplies the output (netdef)"), **_ENGINE}}

    def module(self):
        import torch.nn as nn
        from .modules import ScaledTanH
        a, s = self.p["scale_out"], self.p["scale_in"]
        if a == 1 and s == 1:
            return nn.Tanh()
        return ScaledTanH(a, s)


@register
class AbsVal(_Neuron):
    """y = |x|."""
    summary = "absolute value"

    def module(self):
        from .modules import AbsVal as Module
        return Module()


@register
class Power(_Uncounted):
    """y = (shift + scale * x) ^ power."""
    summary = "(shift + scale x)^power"
    blocks = {"power_param": {"power": Float(1.0, "exponent"), "scale": Float(1.0, "input scale"),
                              "shift": Float(0.0, "input shift")}}
    drawn_fields = ("scale", "power", "shift")

    def module(self):
        from .modules import Power
        return Power(self.p["power"], self.p["scale"], self.p["shift"])


@register
class Exp(_Uncounted):
    """y = base ^ (shift + scale * x); base -1 means e."""
    summary = "base^(shift + scale x)"
    blocks = {"exp_param": {"base": Float(-1.0, "base (-1: e)"), "scale": Float(1.0, "input scale"),
                            "shift": Float(0.0, "input shift")}}
    drawn_fields = ("scale", "shift")

    def check(self):
        if self.p["base"] != -1 and self.p["base"] <= 0:
            yield (("exp_param", "base"), "'base' must be positive or -1 (e)", "> 0 or -1", str(self.p["base"]))

    def module(self):
        from .modules import Exp
        return Exp(self.p["base"], self.p["scale"], self.p["shift"])


@register
class Log(_Uncounted):
    """y = log_base(shift + scale * x); base -1 means e."""
    summary = "log_base(shift + scale x)"
    blocks = {"log_param": {"base": Float(-1.0, "base (-1: e)"), "scale": Float(1.0, "input scale"),
                            "shift": Float(0.0, "input shift")}}
    drawn_fields = ("scale", "shift")

    def check(self):
        if self.p["base"] != -1 and (self.p["base"] <= 0 or self.p["base"] == 1):
            yield (("log_param", "base"), "'base' must be positive and not 1, or -1 (e)", "> 0 or -1",
                   str(self.p["base"]))

    def module(self):
        from .modules import Log
        return Log(self.p["base"], self.p["scale"], self.p["shift"])


@register
class Dropout(_Uncounted):
    """Inverted dropout in TRAIN (y = x * mask / (1 - p)); identity in TEST."""
    summary = "inverted dropout"
    blocks = {"dropout_param": {"dropout_ratio": Float(0.5, "probability of dropping", minimum=0, maximum=1)}}
    drawn_fields = ("dropout_ratio",)

    def module(self):
        import torch.nn as nn
        return nn.Dropout(self.p["dropout_ratio"])
