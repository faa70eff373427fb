"""Layers past Caffe that today's nets are written with: the GELU, SiLU, Hardswish and Mish activations,
GroupNorm and LayerNorm, AdaptiveAvgPool, Upsample and DeepLab's Interp, and ShuffleNet's ShuffleChannel.
Where a Caffe fork has the layer, its type and field names are kept (Interp: DeepLab; ShuffleChannel:
ShuffleNet's Caffe; Upsample's `scale`: the YOLOv3 Caffe fork)."""
from __future__ import annotations

import math

from ..fields import Bool, Enum, Float, Int
from .base import Layer, ShapeError, register
from .common import _axis
from .fillers import FillerField, fill_blobs
from .neuron import _Neuron
from .vision import _spatial_input


# ---------------------------------------------------------------- activations (0 MACs, as every activation)

@register
class GELU(_Neuron):
    """y = x * Phi(x) (Hendrycks and Gimpel), Phi the standard normal CDF; TANH: its tanh approximation."""
    summary = "Gaussian error linear unit (exact or tanh approximation)"
    blocks = {"gelu_param": {"approximate": Enum(["NONE", "TANH"], "NONE", "exact erf form, or the tanh approximation")}}
    drawn_fields = ("approximate",)

    def module(self):
        import torch.nn as nn
        return nn.GELU(self.p["approximate"].lower())


@register
class SiLU(_Neuron):
    """y = x * sigmoid(x) (EfficientNet's swish with beta 1)."""
    summary = "sigmoid linear unit x sigmoid(x)"

    def module(self):
        import torch.nn as nn
        return nn.SiLU()


@register
class Hardswish(_Neuron):
    """y = x * min(max(x + 3, 0), 6) / 6 (MobileNetV3)."""
    summary = "hard swish x relu6(x + 3) / 6"

    def module(self):
        import torch.nn as nn
        return nn.Hardswish()


@register
class Mish(_Neuron):
    """y = x * tanh(softplus(x)) (Misra)."""
    summary = "x tanh(softplus(x))"

    def module(self):
        import torch.nn as nn
        return nn.Mish()


# ---------------------------------------------------------------- normalisation with a learnt affine part

def _affine_fields(what):
    return {"eps": Float(1e-5, "added to the variance", exclusive_minimum=0),
            "affine": Bool(True, f"learn a scale and a bias per {what}"),
            "weight_filler": FillerField("scale initialisation", default_value=1.0),
            "bias_filler": FillerField("bias initialisation")}


class _AffineNorm(Layer):
    """A normalisation whose learnt scale and bias (with `affine`) span `affine_shape(shape)`."""
    kind = "norm"

    def affine_shape(self, shape) -> tuple:
        raise NotImplementedError

    def infer(self, shapes):
        self.affine_shape(shapes[0])
        return [tuple(shapes[0])]

    def param_names(self):
        return ("weight", "bias") if self.p["affine"] else ()

    def blob_specs(self, shapes):
        shape = self.affine_shape(shapes[0])
        return self.blob_list(weight=(shape, self.p["weight_filler"]), bias=(shape, self.p["bias_filler"]))

    def macs(self, shapes, outs):
        return None  # a subtraction, a multiply and a square root per element: not counted, as BatchNorm

    def build(self, shapes):
        return fill_blobs(self.module(shapes[0]), self.blob_specs(shapes))


@register
class GroupNorm(_AffineNorm):
    """Wu and He's group normalisation: channels split into num_groups groups, each normalised over its
    channels and all spatial positions of one sample (the same in TRAIN and TEST); scale and bias per channel."""
    summary = "group normalisation (per-channel affine)"
    blocks = {"group_norm_param": {"num_groups": Int(None, "groups the channels are split into", required=True, minimum=1),
                                   **_affine_fields("channel")}}
    drawn_fields = ("num_groups", "affine")
    drawn_always = ("num_groups",)

    def affine_shape(self, shape):
        if len(shape) < 2:
            raise ShapeError("GroupNorm needs a channel axis", expected="at least 2 axes", found=f"shape {list(shape)}")
        if shape[1] % self.p["num_groups"]:
            raise ShapeError("the channels cannot be split into 'num_groups' groups",
                             expected=f"a divisor of {shape[1]}", found=str(self.p["num_groups"]),
                             path=("group_norm_param", "num_groups"))
        return (shape[1],)

    def module(self, shape):
        import torch.nn as nn
        return nn.GroupNorm(self.p["num_groups"], shape[1], self.p["eps"], self.p["affine"])


@register
class LayerNorm(_AffineNorm):
    """Ba et al.'s layer normalisation over the axes from `axis` to the last (the embedding of N x L x E
    tokens by default); scale and bias span those axes."""
    summary = "layer normalisation over the axes from axis on (elementwise affine)"
    blocks = {"layer_norm_param": {"axis": Int(-1, "first normalised axis (to the last)"), **_affine_fields("element")}}
    drawn_fields = ("axis", "affine")

    def affine_shape(self, shape):
        axis = _axis(self.p["axis"], shape, path=("layer_norm_param", "axis"))
        if axis == 0:
            raise ShapeError("LayerNorm would normalise across the batch", expected="an axis after the first",
                             found=str(self.p["axis"]), path=("layer_norm_param", "axis"))
        return tuple(shape[axis:])

    def module(self, shape):
        import torch.nn as nn
        return nn.LayerNorm(self.affine_shape(shape), self.p["eps"], self.p["affine"])


# ---------------------------------------------------------------- spatial resampling

@register
class AdaptiveAvgPool(Layer):
    """Average pooling to a fixed output size: output cell i of n averages input rows
    floor(i H / n) .. ceil((i + 1) H / n) - 1 (PyTorch's adaptive pooling), likewise for columns."""
    summary = "average pooling to a fixed output size"
    blocks = {"adaptive_avg_pool_param": {
        "output_size": Int(None, "output height and width (one value for both)", repeated=True, minimum=1, required=True)}}
    kind = "pool"
    drawn_fields = ("output_size",)
    drawn_always = ("output_size",)

    def check(self):
        if len(self.p["output_size"]) > 2:
            yield (("adaptive_avg_pool_param", "output_size"), "'output_size' has too many values for a 2-D layer",
                   "1 or 2 values", str(len(self.p["output_size"])))

    def output_size(self):
        size = self.p["output_size"]
        return (size[0], size[-1])

    def infer(self, shapes):
        _spatial_input(shapes[0], "AdaptiveAvgPool")
        return [tuple(shapes[0][:2]) + self.output_size()]

    def build(self, shapes):
        import torch.nn as nn
        return nn.AdaptiveAvgPool2d(self.output_size())


class _Resize(Layer):
    """Resizes the spatial axes of an N x C x H x W bottom (modern_modules.Resize)."""
    kind = "pool"

    def resized(self, shape) -> tuple:
        """(height, width) of the output."""
        raise NotImplementedError

    def size_problems(self, block, factors, by_factor):
        """The output is sized either by factors or by both height and width, never both ways."""
        unsized = [self.p["height"], self.p["width"]].count(None)
        if (by_factor and unsized < 2) or (not by_factor and unsized):
            yield ((block,), f"give either {factors} or both 'height' and 'width'", None, None)

    def infer(self, shapes):
        _spatial_input(shapes[0], type(self).__name__)
        out = self.resized(tuple(shapes[0][2:]))
        if min(out) < 1:
            raise ShapeError(f"{type(self).__name__} gives an empty output", expected="at least 1 x 1",
                             found=f"{out[0]} x {out[1]}")
        return [tuple(shapes[0][:2]) + tuple(out)]


@register
class Upsample(_Resize):
    """Resizes by `scale` (rounding down, as PyTorch) or to height x width, NEAREST or BILINEAR."""
    summary = "resize by a scale or to a size (nearest, bilinear)"
    blocks = {"upsample_param": {
        "scale": Float(None, "size factor of both spatial axes (the YOLOv3 Caffe fork's field)", exclusive_minimum=0),
        "height": Int(None, "output height", minimum=1), "width": Int(None, "output width", minimum=1),
        "mode": Enum(["NEAREST", "BILINEAR"], "NEAREST", "interpolation"),
        "align_corners": Bool(False, "BILINEAR: map corner pixels onto corner pixels (netdef)"),
    }}
    drawn_fields = ("mode", "scale", "height", "width")
    drawn_always = ("mode",)

    def check(self):
        p = self.p
        yield from self.size_problems("upsample_param", "'scale'", p["scale"] is not None)
        if p["align_corners"] and p["mode"] == "NEAREST":
            yield (("upsample_param", "align_corners"), "'align_corners' applies to BILINEAR only", "mode: BILINEAR",
                   "mode: NEAREST")

    def resized(self, shape):
        if self.p["scale"] is None:
            return (self.p["height"], self.p["width"])
        sizes = [size * self.p["scale"] for size in shape]
        if not all(map(math.isfinite, sizes)):
            raise ShapeError("'scale' gives an output size that is not a finite number", expected="a finite scale",
                             found=str(self.p["scale"]), path=("upsample_param", "scale"))
        return tuple(map(math.floor, sizes))

    def macs(self, shapes, outs):
        return 0 if self.p["mode"] == "NEAREST" else None  # bilinear weights: multiplies not counted

    def build(self, shapes):
        from .modern_modules import Resize
        p = self.p
        return Resize(self.resized(tuple(shapes[0][2:])), p["mode"].lower(), p["align_corners"] if p["mode"] == "BILINEAR" else None)


@register
class Interp(_Resize):
    """DeepLab's and PSPNet's Interp: bilinear with corners on corners, after cropping -pad_beg rows and
    columns at the start and -pad_end at the end. Size: height x width, or the cropped size (H - 1) /
    shrink_factor + 1 (rounded down), then H + (H - 1)(zoom_factor - 1); shrink then zoom when both."""
    summary = "DeepLab's bilinear resize (zoom_factor, shrink_factor, height/width)"
    blocks = {"interp_param": {
        "height": Int(None, "output height", minimum=1), "width": Int(None, "output width", minimum=1),
        "zoom_factor": Int(None, "upsample: H + (H - 1)(zoom - 1)", minimum=1),
        "shrink_factor": Int(None, "downsample: (H - 1) / shrink + 1", minimum=1),
        "pad_beg": Int(0, "rows and columns added at the start (<= 0: a crop)", maximum=0),
        "pad_end": Int(0, "rows and columns added at the end (<= 0: a crop)", maximum=0),
    }}
    drawn_fields = ("zoom_factor", "shrink_factor", "height", "width")

    def check(self):
        by_factor = self.p["zoom_factor"] is not None or self.p["shrink_factor"] is not None
        yield from self.size_problems("interp_param", "'zoom_factor' and/or 'shrink_factor'", by_factor)

    def resized(self, shape):
        p = self.p
        if p["height"] is not None:
            return (p["height"], p["width"])
        out = []
        for size in shape:
            size += p["pad_beg"] + p["pad_end"]
            if p["shrink_factor"] is not None:
                size = (size - 1) // p["shrink_factor"] + 1
            if p["zoom_factor"] is not None:
                size += (size - 1) * (p["zoom_factor"] - 1)
            out.append(size)
        return tuple(out)

    def macs(self, shapes, outs):
        return None  # bilinear weights: multiplies not counted

    def build(self, shapes):
        from .modern_modules import Resize
        beg, end = -self.p["pad_beg"], -self.p["pad_end"]
        return Resize(self.resized(tuple(shapes[0][2:])), "bilinear", True, (beg, end, beg, end))


@register
class ShuffleChannel(Layer):
    """ShuffleNet's channel shuffle: C = g x k channels read as g x k, written as k x g."""
    summary = "channel shuffle across groups (ShuffleNet)"
    blocks = {"shuffle_channel_param": {"group": Int(1, "groups of the preceding grouped convolution", minimum=1)}}
    drawn_fields = ("group",)
    drawn_always = ("group",)

    def infer(self, shapes):
        shape = shapes[0]
        if len(shape) < 2 or shape[1] % self.p["group"]:
            raise ShapeError("the channels cannot be split into 'group' groups", expected=f"channels a multiple of "
                             f"{self.p['group']}", found=f"shape {list(shape)}", path=("shuffle_channel_param", "group"))
        return [tuple(shape)]

    def build(self, shapes):
        from .modern_modules import ShuffleChannel as Module
        return Module(self.p["group"])

