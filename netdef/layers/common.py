"""Fully connected and classification layers: InnerProduct, Softmax, Accuracy, ArgMax."""
from __future__ import annotations

from ..fields import Bool, Enum, Int
from .fillers import FillerField, fill_blobs
from .base import METRIC, Layer, ShapeError, numel, register, weight_and_bias


def _axis(axis, shape, what="axis", path=()):
    ndim = len(shape)
    if not -ndim <= axis < ndim:
        raise ShapeError(f"'{what}' is out of range for the input", expected=f"{-ndim}..{ndim - 1}",
                         found=str(axis), path=path)
    return axis % ndim


@register
class InnerProduct(Layer):
    """Fully connected: flattens axes >= axis into K, y = x W^T + b with W [num_output, K]."""
    summary = "fully connected (axis, transpose)"
    blocks = {"inner_product_param": {
        "num_output": Int(None, "number of outputs", required=True, minimum=1),
        "bias_term": Bool(True, "learn a bias"),
        "weight_filler": FillerField("weight initialisation (default constant 0, as Caffe)"),
        "bias_filler": FillerField("bias initialisation"),
        "axis": Int(1, "first axis to flatten into the input vector"),
        "transpose": Bool(False, "store W as [K, num_output]"),
    }}
    kind = "ip"
    drawn_fields = ("num_output", "axis", "bias_term")
    drawn_always = ("num_output",)

    def _k(self, shape):
        axis = _axis(self.p["axis"], shape, path=("inner_product_param", "axis"))
        return axis, numel(shape[axis:])

    def infer(self, shapes):
        axis, _ = self._k(shapes[0])
        return [tuple(shapes[0][:axis]) + (self.p["num_output"],)]

    def param_names(self):
        return weight_and_bias(self.p["bias_term"])

    def blob_specs(self, shapes):
        _, k = self._k(shapes[0])
        n, p = self.p["num_output"], self.p
        return self.blob_list(weight=((k, n) if p["transpose"] else (n, k), p["weight_filler"]),
                              bias=((n,), p["bias_filler"]))

    def macs(self, shapes, outs):
        _, k = self._k(shapes[0])
        return numel(outs[0]) * k

    def build(self, shapes):
        from .modules import InnerProduct as Module
        axis, k = self._k(shapes[0])
        module = Module(k, self.p["num_output"], self.p["bias_term"], axis, self.p["transpose"])
        return fill_blobs(module, self.blob_specs(shapes))


@register
class Softmax(Layer):
    """Softmax over `axis`."""
    summary = "softmax over an axis"
    blocks = {"softmax_param": {"axis": Int(1, "class axis"),
                                "engine": Enum(["DEFAULT", "CAFFE", "CUDNN"], "DEFAULT", "accepted for Caffe compatibility")}}
    net_output = True  # a deploy net's `prob`
    kind = "metric"
    drawn_fields = ("axis",)

    def infer(self, shapes):
        _axis(self.p["axis"], shapes[0], path=("softmax_param", "axis"))
        return [tuple(shapes[0])]

    def macs(self, shapes, outs):
        return None  # exponentials and a division per element: not counted

    def build(self, shapes):
        from .modules import Softmax as Module
        return Module(_axis(self.p["axis"], shapes[0]))


def _check_labels(scores, labels, axis, layer):
    expected = tuple(scores[:axis]) + tuple(scores[axis + 1:])
    if numel(labels) != numel(expected):
        raise ShapeError(f"{layer}: the labels do not match the scores", expected=f"{numel(expected)} labels "
                         f"(scores {list(scores)} without axis {axis})", found=f"shape {list(labels)}")


@register
class Accuracy(Layer):
    """Fraction of samples whose label is among the top_k scores (a metric, not a loss); a second top gives
    Caffe's per-class accuracy (one value per class: the fraction of that class's samples that are hits)."""
    summary = "top-k accuracy, per-class second top"
    blocks = {"accuracy_param": {"top_k": Int(1, "count a hit if the label is among this many best scores", minimum=1),
                                 "axis": Int(1, "class axis"), "ignore_label": Int(None, "label to skip")}}
    bottoms = (2, 2)
    tops = (1, 2)
    role = METRIC
    kind = "metric"
    drawn_fields = ("axis", "top_k")

    def label_classes(self, shapes):
        return {1: shapes[0][_axis(self.p["axis"], shapes[0])]}

    def infer(self, shapes):
        axis = _axis(self.p["axis"], shapes[0], path=("accuracy_param", "axis"))
        _check_labels(shapes[0], shapes[1], axis, "Accuracy")
        if self.p["top_k"] > shapes[0][axis]:
            raise ShapeError("'top_k' exceeds the number of classes", expected=f"<= {shapes[0][axis]}",
                             found=str(self.p["top_k"]), path=("accuracy_param", "top_k"))
        return [(), (shapes[0][axis],)][:len(self.spec.tops)]

    def build(self, shapes):
        axis = _axis(self.p["axis"], shapes[0])
        if len(self.spec.tops) == 2:
            from .caffe_modules import AccuracyPerClass
            return AccuracyPerClass(self.p["top_k"], axis, self.p["ignore_label"], shapes[0][axis])
        from .modules import Accuracy as Module
        return Module(self.p["top_k"], axis, self.p["ignore_label"])


@register
class ArgMax(Layer):
    """Indices (or values) of the top_k entries, over `axis` or over all non-batch axes."""
    summary = "indices of the top-k scores"
    blocks = {"argmax_param": {"out_max_val": Bool(False, "output values (with indices when no axis)"),
                               "top_k": Int(1, "how many", minimum=1), "axis": Int(None, "axis (default: all but batch)")}}
    net_output = True
    kind = "metric"
    drawn_fields = ("axis", "top_k")

    def infer(self, shapes):
        shape, p = shapes[0], self.p
        if p["axis"] is None:
            return [(shape[0], 2 if p["out_max_val"] else 1, p["top_k"])]
        axis = _axis(p["axis"], shape, path=("argmax_param", "axis"))
        return [tuple(shape[:axis]) + (p["top_k"],) + tuple(shape[axis + 1:])]

    def build(self, shapes):
        from .modules import ArgMax as Module
        axis = None if self.p["axis"] is None else _axis(self.p["axis"], shapes[0])
        return Module(self.p["top_k"], axis, self.p["out_max_val"])
