"""Caffe's remaining loss layers: InfogainLoss, HingeLoss, MultinomialLogisticLoss and ContrastiveLoss
(infogain_loss_layer.cpp, hinge_loss_layer.cpp, multinomial_logistic_loss_layer.cpp,
contrastive_loss_layer.cpp). Their first top carries loss_weight 1 unless the net says otherwise."""
from __future__ import annotations

from ..fields import Bool, Enum, File, Float, Int, Str
from .base import LOSS, Layer, ShapeError, numel, register
from .common import _axis, _check_labels
from .loss import LOSS_FIELDS, _NormalizedLoss


class _PerSampleLoss(Layer):
    """A loss over N samples of count / N scores each, with one class label per sample (Caffe's
    LossLayer with `dim = count / num`)."""
    bottoms = (2, 2)
    role = LOSS
    kind = "loss"

    def label_classes(self, shapes):
        return {1: numel(shapes[0][1:])}

    def infer(self, shapes):
        scores, labels = shapes
        if len(scores) < 2 or numel(labels) != scores[0]:
            raise ShapeError(f"{type(self).__name__} needs N x K scores and one label per sample",
                             expected=f"{scores[0] if scores else 'N'} labels", found=f"shape {list(labels)}")
        return [()]

    def macs(self, shapes, outs):
        return None  # a comparison or a logarithm per score: not counted


@register
class HingeLoss(_PerSampleLoss):
    """The one-vs-all hinge loss: sum over samples n and classes k of max(0, 1 - d_nk x_nk) / N, with d_nk +1
    for the sample's class and -1 for the others (L1), or of its square (L2)."""
    summary = "one-vs-all hinge loss (L1, L2)"
    blocks = {"hinge_loss_param": {"norm": Enum(["L1", "L2"], "L1", "sum the margins' violations, or their squares")}}
    drawn_fields = ("norm",)

    def build(self, shapes):
        from .catalogue_modules import HingeLoss as Module
        return Module(self.p["norm"])


@register
class MultinomialLogisticLoss(_PerSampleLoss):
    """-sum over samples of log(max(p[label], 1e-20)) / N, for scores that are already probabilities (a
    Softmax before it; SoftmaxWithLoss does both at once, more stably)."""
    summary = "-log p[label] of given probabilities"

    def build(self, shapes):
        from .catalogue_modules import MultinomialLogisticLoss as Module
        return Module()


@register
class InfogainLoss(_NormalizedLoss):
    """Softmax of the scores over `axis`, then -sum over positions of sum_k H[label, k] log(max(p_k, 1e-20)),
    over Caffe's normalizer: the cross-entropy with the identity for H, and a cost per (true, predicted)
    class pair otherwise. H (K x K) is the third bottom or the `source` file (a Caffe binaryproto blob); a
    second top gives the probabilities."""
    summary = "softmax loss weighted by an infogain matrix H (bottom or binaryproto)"
    blocks = {"infogain_loss_param": {"source": File(None, "binaryproto file of H, K x K (relative to the net file), "
                                                          "when there is no third bottom"),
                                      "axis": Int(1, "class axis")},
              "loss_param": LOSS_FIELDS}
    bottoms = (2, 3)
    tops = (1, 2)
    drawn_fields = ("axis",)

    def check(self):
        has_matrix_bottom = len(self.spec.bottoms) == 3
        if has_matrix_bottom == (self.p["source"] is not None):
            yield (("infogain_loss_param", "source") if has_matrix_bottom else ("bottom",),
                   "InfogainLoss takes its matrix H from a third bottom or from 'source', exactly one of them",
                   "a third bottom or infogain_loss_param.source", None)
        if self.params["loss_param"]["normalize"] is not None:
            yield (("loss_param", "normalize"), "InfogainLoss does not take the deprecated 'normalize' (as Caffe)",
                   "'normalization'", None)

    def _axis(self, shape):
        return _axis(self.p["axis"], shape, path=("infogain_loss_param", "axis"))

    def label_classes(self, shapes):
        return {1: shapes[0][self._axis(shapes[0])]}

    def matrix(self, classes):
        """H read from `source`, as a K x K float32 array."""
        from ..data.mean import read_binaryproto
        from ..errors import NetdefError
        path = self.spec.base_dir / self.p["source"]
        try:
            matrix = read_binaryproto(path)
        except NetdefError as exc:
            raise ShapeError(f"cannot read the infogain matrix: {exc.problems[0].message}",
                             path=("infogain_loss_param", "source")) from None
        if matrix.size != classes * classes:
            raise ShapeError("the infogain matrix must be K x K for K classes", expected=f"{classes * classes} values",
                             found=f"shape {list(matrix.shape)}", path=("infogain_loss_param", "source"))
        return matrix.reshape(classes, classes)

    def infer(self, shapes):
        axis = self._axis(shapes[0])
        _check_labels(shapes[0], shapes[1], axis, "InfogainLoss")
        classes = shapes[0][axis]
        if len(shapes) == 3 and numel(shapes[2]) != classes * classes:
            raise ShapeError("the infogain matrix (third bottom) must be K x K for K classes",
                             expected=f"{classes * classes} values", found=f"shape {list(shapes[2])}")
        if len(shapes) == 2:
            self.matrix(classes)
        return [()] + [tuple(shapes[0])] * (len(self.spec.tops) - 1)

    def build(self, shapes):
        from .catalogue_modules import InfogainLoss as Module
        axis = self._axis(shapes[0])
        matrix = self.matrix(shapes[0][axis]) if len(shapes) == 2 else None
        return Module(axis, self.params["loss_param"]["ignore_label"], self.normalization(), len(self.spec.tops) == 2,
                      matrix)


@register
class ContrastiveLoss(Layer):
    """Hadsell, Chopra and LeCun's loss of a siamese net: for feature pairs a, b (N x C, or N x C x 1 x 1)
    and a third bottom y (1: similar pair), sum of y d^2 + (1 - y) max(margin - d, 0)^2 over 2N, d = ||a - b||.
    legacy_version uses max(margin - d^2, 0) instead. The backward is Caffe's: a dissimilar pair's gradient
    divides by d + 1e-4, not d (finite at d = 0); y gets none."""
    summary = "siamese pair loss (margin, legacy_version)"
    blocks = {"contrastive_loss_param": {"margin": Float(1.0, "dissimilar pairs closer than this are penalised"),
                                         "legacy_version": Bool(False, "max(margin - d^2, 0): Caffe's first form")}}
    bottoms = (3, 3)
    role = LOSS
    kind = "loss"
    drawn_fields = ("margin",)

    def label_classes(self, shapes):
        return {2: 2}

    def infer(self, shapes):
        a, b, similar = (tuple(s) for s in shapes)
        if len(a) < 2 or any(size != 1 for size in a[2:]):
            raise ShapeError("ContrastiveLoss compares feature vectors", expected="shape [N, C] or [N, C, 1, 1]",
                             found=f"shape {list(a)}")
        if b != a:
            raise ShapeError("ContrastiveLoss's two feature bottoms must have the same shape", expected=f"shape {list(a)}",
                             found=f"shape {list(b)}")
        if numel(similar) != a[0]:
            raise ShapeError("ContrastiveLoss's third bottom holds one similarity label per pair",
                             expected=f"{a[0]} values", found=f"shape {list(similar)}")
        return [()]

    def macs(self, shapes, outs):
        return numel(shapes[0])  # a square per feature difference

    def build(self, shapes):
        from .catalogue_modules import ContrastiveLoss as Module
        return Module(self.p["margin"], self.p["legacy_version"])
