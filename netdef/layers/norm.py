"""Normalisation and affine layers: BatchNorm, Scale, Bias."""
from __future__ import annotations

from ..fields import Bool, Float, Int
from .fillers import FillerField, fill_blobs
from .base import Layer, ShapeError, numel, register
from .common import _axis


@register
class BatchNorm(Layer):
    """Caffe's BatchNorm: normalises with batch statistics in TRAIN and stored ones in TEST. Its first three
    blobs are statistics, never trained. Caffe's has no affine part (follow it with Scale {bias_term: true});
    `scale_bias` (NVIDIA Caffe's field) adds a learnt per-channel scale and bias as blobs 3 and 4, PyTorch's
    affine batch norm in one layer."""
    summary = "batch normalisation (Caffe's statistics; scale_bias: learnt scale and bias, NVIDIA Caffe)"
    blocks = {"batch_norm_param": {
        "use_global_stats": Bool(None, "use stored statistics (default: false in TRAIN, true in TEST)"),
        "moving_average_fraction": Float(0.999, "decay of the stored statistics"),
        "eps": Float(1e-5, "added to the variance"),
        "scale_bias": Bool(False, "also learn a per-channel scale and bias (NVIDIA Caffe; PyTorch's affine)"),
        "bias_filler": FillerField("bias initialisation"),
        "scale_filler": FillerField("scale initialisation", default_value=1.0),
    }}
    kind = "norm"
    drawn_fields = ("use_global_stats", "scale_bias")
    STATISTICS = ("mean", "variance", "scale_factor")

    def check(self):
        for i, spec in enumerate((self.spec.raw.get("param") or [])[:len(self.STATISTICS)]):
            if spec.get("lr_mult", 0) != 0:
                yield (("param", i, "lr_mult"), "BatchNorm statistics cannot be learnt", "lr_mult: 0",
                       str(spec["lr_mult"]))

    def infer(self, shapes):
        if len(shapes[0]) < 2:
            raise ShapeError("BatchNorm needs a channel axis", expected="at least 2 axes", found=f"shape {list(shapes[0])}")
        return [tuple(shapes[0])]

    def param_names(self):
        return self.STATISTICS + (("weight", "bias") if self.p["scale_bias"] else ())

    def blob_specs(self, shapes):
        c, stored = shapes[0][1], {"learnable": False}
        return self.blob_list(mean=((c,), None, stored), variance=((c,), None, stored), scale_factor=((1,), None, stored),
                              weight=((c,), self.p["scale_filler"]), bias=((c,), self.p["bias_filler"]))

    def macs(self, shapes, outs):
        return None  # a subtraction, a multiply and a square root per element: not counted

    def build(self, shapes):
        from .modules import CaffeBatchNorm
        from .modern_modules import AffineBatchNorm
        p = self.p
        module = (AffineBatchNorm if p["scale_bias"] else CaffeBatchNorm)(
            shapes[0][1], p["eps"], p["moving_average_fraction"], p["use_global_stats"])
        return fill_blobs(module, self.blob_specs(shapes))


def _param_axes(shape, axis, num_axes, block):
    axis = _axis(axis, shape, path=(block, "axis"))
    end = len(shape) if num_axes == -1 else axis + num_axes
    if end > len(shape):
        raise ShapeError("'num_axes' reaches past the input's last axis", expected=f"<= {len(shape) - axis}",
                         found=str(num_axes), path=(block, "num_axes"))
    return axis, tuple(shape[axis:end])


def _affine_shape(shapes, p, block):
    """(axis, shape of gamma/beta): spanning [axis, axis + num_axes) of the input, or the second bottom's
    shape, which must then equal the input's axes from `axis` on (num_axes is ignored, as in Caffe)."""
    if len(shapes) == 1:
        return _param_axes(shapes[0], p["axis"], p["num_axes"], block)
    axis = _axis(p["axis"], shapes[0], path=(block, "axis"))
    shape = tuple(shapes[1])
    if tuple(shapes[0][axis:axis + len(shape)]) != shape:
        raise ShapeError("the second bottom does not fit the input", expected=f"shape {list(shapes[0][axis:axis + len(shape)])}",
                         found=f"shape {list(shape)}")
    return axis, shape


@register
class Scale(Layer):
    """y = x * gamma (+ beta); gamma spans axes [axis, axis + num_axes), or is the second bottom."""
    summary = "learnt per-channel scale (and bias)"
    blocks = {"scale_param": {
        "axis": Int(1, "first axis gamma spans"), "num_axes": Int(1, "axes gamma spans (-1: to the end)", minimum=-1),
        "filler": FillerField("gamma initialisation", default_value=1.0),
        "bias_term": Bool(False, "also learn beta"), "bias_filler": FillerField("beta initialisation"),
    }}
    bottoms = (1, 2)
    kind = "norm"
    drawn_fields = ("axis", "bias_term")

    def _shape(self, shapes):
        return _affine_shape(shapes, self.p, "scale_param")

    def param_names(self):
        """gamma, unless the second bottom is the scale, then beta: with a second bottom the bias is
        Caffe's blob 0, and the first `param:` entry governs it."""
        return (() if len(self.spec.bottoms) == 2 else ("weight",)) + (("bias",) if self.p["bias_term"] else ())

    def blob_specs(self, shapes):
        _, shape = self._shape(shapes)
        return self.blob_list(weight=(shape, self.p["filler"]), bias=(shape, self.p["bias_filler"]))

    def infer(self, shapes):
        self._shape(shapes)
        return [tuple(shapes[0])]

    def macs(self, shapes, outs):
        return numel(outs[0])

    def build(self, shapes):
        from .modules import Scale as Module
        axis, shape = self._shape(shapes)
        module = Module(shape, axis, self.p["bias_term"], learn_scale=len(shapes) == 1)
        return fill_blobs(module, self.blob_specs(shapes))


@register
class Bias(Layer):
    """y = x + beta; beta spans axes [axis, axis + num_axes), or is the second bottom."""
    summary = "learnt bias"
    blocks = {"bias_param": {
        "axis": Int(1, "first axis beta spans"), "num_axes": Int(1, "axes beta spans (-1: to the end)", minimum=-1),
        "filler": FillerField("beta initialisation"),
    }}
    bottoms = (1, 2)
    kind = "norm"
    drawn_fields = ("axis",)

    def param_names(self):
        return () if len(self.spec.bottoms) == 2 else ("bias",)

    def blob_specs(self, shapes):
        return self.blob_list(bias=(_affine_shape(shapes, self.p, "bias_param")[1], self.p["filler"]))

    def infer(self, shapes):
        _affine_shape(shapes, self.p, "bias_param")
        return [tuple(shapes[0])]

    def build(self, shapes):
        from .modules import Bias as Module
        axis, shape = _affine_shape(shapes, self.p, "bias_param")
        return fill_blobs(Module(shape, axis, learn_bias=len(shapes) == 1), self.blob_specs(shapes))
