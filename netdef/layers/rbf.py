"""Euclidean radial basis function units and their loss: the output layer of LeNet-5 (LeCun et al. 1998).

Each RBF unit i outputs the squared distance between its input vector x and its centre w_i,
y_i = sum_j (x_j - w_ij)^2: a penalty, small when the input is close to the class's code. The centres
can be written in the net (as numbers, or drawn as +1/-1 bitmaps, as the paper's 7x12 digit codes) or
learnt from a filler; `param: {lr_mult: 0}` keeps them fixed.
"""
from __future__ import annotations

from ..fields import Float, Int, Str
from .fillers import FillerField, fill_blobs
from .base import LOSS, Layer, ShapeError, numel, register
from .common import _axis, _check_labels

BITMAP_VALUES = {"#": 1.0, ".": -1.0}


def bitmap_code(text: str) -> list:
    """A drawn code as numbers: '#' is +1, '.' is -1; whitespace (line breaks) is ignored."""
    return [BITMAP_VALUES[ch] for ch in text if not ch.isspace()]


@register
class RBF(Layer):
    """Euclidean RBF units: y_i = sum_j (x_j - w_ij)^2 over the input flattened from `axis`."""
    summary = "Euclidean radial basis units, y_i = sum_j (x_j - w_ij)^2 (LeNet-5's output)"
    blocks = {"rbf_param": {
        "num_output": Int(None, "number of units (centres)", required=True, minimum=1),
        "center": Float(None, "the centres as numbers: one row per unit", list_of=True, repeated=True),
        "bitmap": Str(None, "the centres drawn as text, one string per unit: '#' is +1, '.' is -1, "
                            "whitespace ignored (LeNet-5's 7x12 digit codes)", repeated=True),
        "weight_filler": FillerField("centre initialisation when neither center nor bitmap is given"),
        "axis": Int(1, "first axis to flatten into the input vector"),
    }}
    kind = "ip"
    drawn_fields = ("num_output", "axis")
    drawn_always = ("num_output",)

    def check(self):
        p = self.p
        for key in ("center", "bitmap"):
            if p[key] and len(p[key]) != p["num_output"]:
                yield (("rbf_param", key), f"'{key}' needs one entry per unit", f"{p['num_output']} entries",
                       str(len(p[key])))
        if p["center"] and p["bitmap"]:
            yield (("rbf_param", "bitmap"), "give the centres either as 'center' or as 'bitmap'", None, None)
        for i, text in enumerate(p["bitmap"]):
            bad = sorted({ch for ch in text if not ch.isspace() and ch not in BITMAP_VALUES})
            if bad:
                yield (("rbf_param", "bitmap", i), "a bitmap may hold only '#' (+1) and '.' (-1)",
                       "'#' or '.'", repr(bad[0]))

    def _k(self, shape):
        axis = _axis(self.p["axis"], shape, path=("rbf_param", "axis"))
        return axis, numel(shape[axis:])

    def centers(self):
        """The centres written in the net (a list of rows), or None when they come from the filler."""
        if self.p["bitmap"]:
            return [bitmap_code(text) for text in self.p["bitmap"]]
        return [list(row) for row in self.p["center"]] or None

    def infer(self, shapes):
        axis, k = self._k(shapes[0])
        rows = self.centers()
        if rows:
            key = "bitmap" if self.p["bitmap"] else "center"
            for i, row in enumerate(rows):
                if len(row) != k:
                    raise ShapeError(f"centre {i} does not have the input's size", expected=f"{k} values",
                                     found=f"{len(row)} values", path=("rbf_param", key, i))
        return [tuple(shapes[0][:axis]) + (self.p["num_output"],)]

    def param_names(self):
        return ("weight",)

    def blob_specs(self, shapes):
        filler = None if self.centers() else self.p["weight_filler"]  # written centres are copied in build
        return self.blob_list(weight=((self.p["num_output"], self._k(shapes[0])[1]), filler))

    def macs(self, shapes, outs):
        return numel(outs[0]) * self._k(shapes[0])[1]

    def build(self, shapes):
        import torch
        from .modules import RBF as Module
        axis, k = self._k(shapes[0])
        module = Module(k, self.p["num_output"], axis)
        rows = self.centers()
        if rows:
            with torch.no_grad():
                module.weight.copy_(torch.tensor(rows))
        return fill_blobs(module, self.blob_specs(shapes))


@register
class RBFLoss(Layer):
    """LeCun et al. (1998)'s loss on RBF penalties: the penalty of the correct class (Eq. 8), plus, when
    `j` is given, the competitive term log(e^-j + sum_i e^-y_i) (Eq. 9); averaged over the batch."""
    summary = "penalty of the correct class (+ LeNet-5's log-sum-exp term with j)"
    blocks = {"rbf_loss_param": {
        "j": Float(None, "the constant j of the competitive term log(e^-j + sum_i e^-y_i); absent: no such term "
                         "(the maximum-likelihood criterion, Eq. 8)"),
        "axis": Int(1, "class axis"),
    }}
    bottoms = (2, 2)
    role = LOSS
    kind = "loss"
    drawn_fields = ("axis",)

    def label_classes(self, shapes):
        return {1: shapes[0][_axis(self.p["axis"], shapes[0])]}

    def macs(self, shapes, outs):
        return None  # a gather, and exponentials with j: not counted

    def infer(self, shapes):
        axis = _axis(self.p["axis"], shapes[0], path=("rbf_loss_param", "axis"))
        _check_labels(shapes[0], shapes[1], axis, "RBFLoss")
        return [()]

    def build(self, shapes):
        from .modules import RBFLoss as Module
        return Module(_axis(self.p["axis"], shapes[0]), self.p["j"])
