"""Caffe's layers that crop, reduce, normalise or route whole blobs: Crop, Reduction, MVN, Silence, Filter and
BatchReindex (crop_layer.cpp, reduction_layer.cpp, mvn_layer.cpp, silence_layer.cpp, filter_layer.cpp,
batch_reindex_layer.cpp)."""
from __future__ import annotations

from ..fields import Bool, Enum, Float, Int
from .base import Layer, ShapeError, register
from .common import _axis


@register
class Crop(Layer):
    """Crops the first bottom to the second's shape on every axis from `axis` on, starting at `offset` (one
    value for all cropped axes, or one per axis); the axes before `axis` are kept. Only the first bottom
    gets a gradient. FCN and U-Net crop an upsampled map to the size of the skip connection with it."""
    summary = "crop to the second bottom's shape from an axis on (offset)"
    blocks = {"crop_param": {"axis": Int(2, "first axis to crop (negative: from the end)"),
                             "offset": Int(None, "where the crop starts: one value for all cropped axes, or one per "
                                                 "axis; default 0", repeated=True, minimum=0)}}
    bottoms = (2, 2)
    drawn_fields = ("axis", "offset")

    def geometry(self, shapes):
        """(axis, offsets per cropped axis) for these bottoms; raises ShapeError where the crop does not fit."""
        data, reference = (tuple(s) for s in shapes)
        if len(data) != len(reference):
            raise ShapeError("Crop's bottoms must have the same number of axes", expected=f"{len(data)} axes",
                             found=f"shape {list(reference)}")
        axis = _axis(self.p["axis"], data, path=("crop_param", "axis"))
        cropped = len(data) - axis
        offsets = self.p["offset"] or [0]
        if len(offsets) not in (1, cropped):
            raise ShapeError("give one 'offset' for all cropped axes or one per axis", expected=f"1 or {cropped} values",
                             found=str(len(offsets)), path=("crop_param", "offset"))
        offsets = offsets * cropped if len(offsets) == 1 else list(offsets)
        for i, offset in enumerate(offsets):
            size, wanted = data[axis + i], reference[axis + i]
            if offset + wanted > size:
                raise ShapeError(f"the crop of axis {axis + i} runs past the first bottom", path=("crop_param", "offset"),
                                 expected=f"offset + {wanted} <= {size}", found=f"offset {offset}")
        return axis, offsets

    def infer(self, shapes):
        axis, _ = self.geometry(shapes)
        return [tuple(shapes[0][:axis]) + tuple(shapes[1][axis:])]

    def build(self, shapes):
        from .catalogue_modules import Crop as Module
        axis, offsets = self.geometry(shapes)
        return Module(axis, offsets, tuple(shapes[1][axis:]))


@register
class Reduction(Layer):
    """Reduces every axis from `axis` on (SUM, ASUM: sum of absolute values, SUMSQ: sum of squares, MEAN),
    times `coeff`: the top is the bottom's shape before `axis` (a scalar with axis 0, the default)."""
    summary = "SUM/ASUM/SUMSQ/MEAN over the trailing axes, times coeff"
    blocks = {"reduction_param": {"operation": Enum(["SUM", "ASUM", "SUMSQ", "MEAN"], "SUM", "what to reduce with"),
                                  "axis": Int(0, "first axis reduced; every later axis is reduced too"),
                                  "coeff": Float(1.0, "multiplies the result")}}
    drawn_fields = ("operation", "axis", "coeff")
    drawn_always = ("operation",)

    def _axis(self, shape):
        return _axis(self.p["axis"], shape, path=("reduction_param", "axis")) if shape else 0

    def infer(self, shapes):
        return [tuple(shapes[0][:self._axis(shapes[0])])]

    def macs(self, shapes, outs):
        return None  # an addition per element (and a square with SUMSQ): not counted

    def build(self, shapes):
        from .catalogue_modules import Reduction as Module
        return Module(self.p["operation"], self._axis(shapes[0]), self.p["coeff"])


@register
class MVN(Layer):
    """Mean-variance normalisation of each sample's channels (or, across_channels, of each sample): subtract
    the mean, and with normalize_variance divide by (standard deviation + eps) (eps added to the deviation,
    as Caffe). Computed per forward pass, the same in TRAIN and TEST, without learnt parameters."""
    summary = "per-channel (or per-sample) mean subtraction and variance normalisation"
    blocks = {"mvn_param": {"normalize_variance": Bool(True, "divide by the standard deviation"),
                            "across_channels": Bool(False, "normalise over C x H x W instead of each H x W"),
                            "eps": Float(1e-9, "added to the standard deviation", minimum=0)}}
    kind = "norm"
    drawn_fields = ("normalize_variance", "across_channels")

    def infer(self, shapes):
        if len(shapes[0]) < 2:
            raise ShapeError("MVN needs a batch and a channel axis", expected="at least 2 axes",
                             found=f"shape {list(shapes[0])}")
        return [tuple(shapes[0])]

    def macs(self, shapes, outs):
        return None  # sums, a square root and a division per element: not counted, as BatchNorm

    def build(self, shapes):
        from .catalogue_modules import MVN as Module
        p = self.p
        return Module(1 if p["across_channels"] else 2, p["normalize_variance"], p["eps"])


@register
class Silence(Layer):
    """Takes any number of bottoms and gives nothing: it marks blobs a net computes but does not need (a
    data layer's unused label), so they are not net outputs. Its bottoms get a zero gradient."""
    summary = "swallows its bottoms (no tops)"
    bottoms = (1, None)
    tops = (0, 0)
    exportable = False  # an ONNX graph of it alone would have no outputs, which onnxruntime refuses

    def infer(self, shapes):
        return []

    def build(self, shapes):
        from .catalogue_modules import Silence as Module
        return Module()


@register
class Filter(Layer):
    """Keeps the items (along the first axis) of each bottom whose selector, the last bottom (N, or N x 1 x
    ...), is not 0: top j holds bottom j's selected items, in order. How many that is depends on the data:
    the shape rule gives the bottoms' N, the most it can keep, and layers after it must not depend on the
    batch size. The gradient goes back to the selected items; the selector gets none."""
    summary = "keeps the items whose selector (last bottom) is not 0"
    bottoms = (2, None)
    tops = (1, None)

    def check(self):
        if len(self.spec.tops) != len(self.spec.bottoms) - 1:
            wanted = len(self.spec.bottoms) - 1
            yield (("top",), "Filter has one top per bottom before the selector",
                   f"{wanted} top{'s' if wanted != 1 else ''}", str(len(self.spec.tops)))

    def infer(self, shapes):
        *data, selector = (tuple(s) for s in shapes)
        if not selector or any(size != 1 for size in selector[1:]):
            raise ShapeError("Filter's selector (last bottom) has one value per item", expected="shape [N] or [N, 1, ...]",
                             found=f"shape {list(selector)}")
        for name, shape in zip(self.spec.bottoms, data):
            if not shape or shape[0] != selector[0]:
                raise ShapeError(f"Filter bottom '{name}' must have one item per selector value",
                                 expected=f"{selector[0]} items", found=f"shape {list(shape)}")
        return data

    def build(self, shapes):
        from .catalogue_modules import Filter as Module
        return Module()


@register
class BatchReindex(Layer):
    """top[i] = bottom[permut[i]] along the first axis: the second bottom (K indices into the first bottom's
    N items, repeats allowed) reorders, repeats or drops items. Gradients of repeated items add up."""
    summary = "top[i] = bottom[index[i]] along the batch axis"
    bottoms = (2, 2)

    def label_classes(self, shapes):
        return {1: shapes[0][0]}

    def infer(self, shapes):
        data, index = (tuple(s) for s in shapes)
        if len(index) != 1:
            raise ShapeError("BatchReindex's indices (second bottom) are a vector", expected="shape [K]",
                             found=f"shape {list(index)}")
        if not data:
            raise ShapeError("BatchReindex needs a batch axis", expected="at least 1 axis", found="a scalar")
        return [index + data[1:]]

    def build(self, shapes):
        from .catalogue_modules import BatchReindex as Module
        return Module()
