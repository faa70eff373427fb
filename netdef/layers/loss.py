"""Loss layers (role LOSS): their first top carries loss_weight 1 unless the net says otherwise."""
from __future__ import annotations

from ..fields import Bool, Enum, Int
from .base import LOSS, Layer, ShapeError, numel, register
from .common import _axis, _check_labels

LOSS_FIELDS = {
    "ignore_label": Int(None, "samples with this label add nothing"),
    "normalization": Enum(["FULL", "VALID", "BATCH_SIZE", "NONE"], "VALID",
                          "divisor: all positions, non-ignored ones, the batch size, or 1"),
    "normalize": Bool(None, "deprecated: false means BATCH_SIZE, true VALID"),
}


class _NormalizedLoss(Layer):
    """A loss divided by Caffe's normalizer, chosen by `loss_param`."""
    bottoms = (2, 2)
    role = LOSS
    kind = "loss"

    def macs(self, shapes, outs):
        return None  # logarithms and exponentials: not counted

    def normalization(self):
        loss = self.params["loss_param"]
        if loss["normalize"] is not None and "normalization" not in (self.spec.raw.get("loss_param") or {}):
            return "VALID" if loss["normalize"] else "BATCH_SIZE"
        return loss["normalization"]


@register
class SoftmaxWithLoss(_NormalizedLoss):
    """Cross-entropy of softmax(scores) against integer labels; a second top gives the probabilities."""
    summary = "softmax cross-entropy (ignore_label, normalization)"
    blocks = {"softmax_param": {"axis": Int(1, "class axis"),
                                "engine": Enum(["DEFAULT", "CAFFE", "CUDNN"], "DEFAULT", "accepted for Caffe compatibility")},
              "loss_param": LOSS_FIELDS}
    tops = (1, 2)
    drawn_fields = ("axis",)

    def label_classes(self, shapes):
        return {1: shapes[0][_axis(self.params["softmax_param"]["axis"], shapes[0])]}

    def infer(self, shapes):
        axis = _axis(self.params["softmax_param"]["axis"], shapes[0], path=("softmax_param", "axis"))
        _check_labels(shapes[0], shapes[1], axis, "SoftmaxWithLoss")
        return [()] + [tuple(shapes[0])] * (len(self.spec.tops) - 1)

    def build(self, shapes):
        from .modules import SoftmaxWithLoss as Module
        axis = _axis(self.params["softmax_param"]["axis"], shapes[0])
        return Module(axis, self.params["loss_param"]["ignore_label"], self.normalization(), len(self.spec.tops) == 2)


@register
class SigmoidCrossEntropyLoss(_NormalizedLoss):
    """Cross-entropy of sigmoid(scores) against targets in [0, 1], one per score; unlike SoftmaxWithLoss,
    Caffe divides it by the batch size unless `loss_param` says otherwise."""
    summary = "sigmoid cross-entropy (ignore_label, normalization)"
    blocks = {"loss_param": {**LOSS_FIELDS, "normalization": Enum(
        ["FULL", "VALID", "BATCH_SIZE", "NONE"], "BATCH_SIZE",
        "divisor: all positions, non-ignored ones, the batch size, or 1")}}

    def infer(self, shapes):
        scores, targets = shapes
        if numel(scores) != numel(targets):
            raise ShapeError("SigmoidCrossEntropyLoss needs one target per score",
                             expected=f"{numel(scores)} targets (scores {list(scores)})", found=f"shape {list(targets)}")
        return [()]

    def build(self, shapes):
        from .modules import SigmoidCrossEntropyLoss as Module
        return Module(self.params["loss_param"]["ignore_label"], self.normalization())


@register
class EuclideanLoss(Layer):
    """Sum of squared differences / (2 N)."""
    summary = "sum of squares / 2N"
    bottoms = (2, 2)
    role = LOSS
    kind = "loss"

    def infer(self, shapes):
        a, b = shapes
        if numel(a) != numel(b) or a[0] != b[0]:
            raise ShapeError("EuclideanLoss bottoms must have the same size", expected=f"shape {list(a)}",
                             found=f"shape {list(b)}")
        return [()]

    def macs(self, shapes, outs):
        return numel(shapes[0])

    def build(self, shapes):
        from .modules import EuclideanLoss as Module
        return Module()
