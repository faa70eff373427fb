"""torch.nn modules of the Caffe layer types in caffe_neuron.py, caffe_structure.py, caffe_spatial.py,
caffe_losses.py and caffe_io.py, each following its Caffe source file. Imported only when a net is compiled."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .caffe_modules import StochasticPool2d
from .modules import PaddedPool2d, _labels, normalized

LOG_THRESHOLD = 1e-20  # Caffe's kLOG_THRESHOLD: probabilities are clamped to it before the logarithm


class _ClampMin(torch.autograd.Function):
    """max(value, low) in the forward pass with the gradient of `value` itself: Caffe clamps a probability
    before its logarithm, but its backward divides by the clamped value (or ignores the clamp) all the same."""

    @staticmethod
    def forward(ctx, value, low):
        return value.clamp_min(low)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


# ---------------------------------------------------------------- elementwise

class Threshold(nn.Module):
    def __init__(self, threshold):
        super().__init__()
        self.threshold = threshold

    def forward(self, x):
        return (x > self.threshold).to(x.dtype)


class Clip(nn.Module):
    """torch.clamp, whose gradient passes where min <= x <= max, bounds included, as Caffe's."""

    def __init__(self, low, high):
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x):
        return torch.clamp(x, self.low, self.high)


class Swish(nn.Module):
    def __init__(self, beta):
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)


# ---------------------------------------------------------------- whole blobs

class Crop(nn.Module):
    def __init__(self, axis, offsets, sizes):
        super().__init__()
        self.axis, self.offsets, self.sizes = axis, offsets, sizes

    def forward(self, x, reference):
        for i, (offset, size) in enumerate(zip(self.offsets, self.sizes)):
            x = x.narrow(self.axis + i, offset, size)
        return x


class Reduction(nn.Module):
    def __init__(self, operation, axis, coeff):
        super().__init__()
        self.operation, self.axis, self.coeff = operation, axis, coeff

    def forward(self, x):
        rows = x.reshape(x.shape[:self.axis] + (-1,))
        if self.operation == "ASUM":
            rows = rows.abs()
        elif self.operation == "SUMSQ":
            rows = rows * rows
        reduced = rows.mean(-1) if self.operation == "MEAN" else rows.sum(-1)
        return reduced * self.coeff


class MVN(nn.Module):
    """(x - mean) [/ (std + eps)] over every axis from `first_axis` on; the variance is the biased one."""

    def __init__(self, first_axis, normalize_variance, eps):
        super().__init__()
        self.first_axis, self.normalize_variance, self.eps = first_axis, normalize_variance, eps

    def forward(self, x):
        rows = x.reshape(x.shape[:self.first_axis] + (-1,))
        centred = rows - rows.mean(-1, keepdim=True)
        if self.normalize_variance:
            std = (centred * centred).mean(-1, keepdim=True).sqrt()
            centred = centred / (std + self.eps)
        return centred.reshape(x.shape)


class Silence(nn.Module):
    def forward(self, *bottoms):
        return ()


class Filter(nn.Module):
    """The items whose selector is not 0, of every bottom but the selector (the last)."""

    def forward(self, *bottoms):
        *data, selector = bottoms
        index = (selector.detach().reshape(-1) != 0).nonzero().reshape(-1)
        kept = tuple(x.index_select(0, index) for x in data)
        return kept[0] if len(kept) == 1 else kept


class BatchReindex(nn.Module):
    def forward(self, x, index):
        return x.index_select(0, index.detach().long())


# ---------------------------------------------------------------- spatial

class SpatialPyramidPool(nn.Module):
    """Each level a Caffe pooling (PaddedPool2d: explicit padding, Caffe's output size; STOCHASTIC: Caffe's
    sampling, unpadded), flattened, joined."""

    def __init__(self, pool, levels):
        super().__init__()
        self.levels = nn.ModuleList(StochasticPool2d(kernel, kernel, sizes) if pool == "STOCHASTIC"
                                    else PaddedPool2d(pool, kernel, kernel, pad, sizes) for kernel, pad, sizes in levels)

    def forward(self, x):
        return torch.cat([level(x).flatten(1) for level in self.levels], 1)


class Im2col(nn.Module):
    """F.unfold's N x (C kh kw) x L columns as N x (C kh kw) x H_out x W_out maps."""

    def __init__(self, kernel, stride, pad, dilation, out_size):
        super().__init__()
        self.kernel, self.stride, self.pad, self.dilation, self.out_size = kernel, stride, pad, dilation, out_size

    def forward(self, x):
        patches = F.unfold(x, self.kernel, self.dilation, self.pad, self.stride)
        return patches.reshape(x.shape[0], patches.shape[1], *self.out_size)


# ---------------------------------------------------------------- losses

def _per_sample(scores, label):
    """Scores as N x K rows and labels as N class indices (Caffe's dim = count / num)."""
    return scores.reshape(scores.shape[0], -1), label.reshape(-1).long()


class HingeLoss(nn.Module):
    def __init__(self, norm):
        super().__init__()
        self.norm = norm

    def forward(self, scores, label):
        rows, target = _per_sample(scores, label)
        sign = 1 - 2 * F.one_hot(target, rows.shape[1]).to(rows.dtype)  # -1 at the true class, +1 elsewhere
        margins = torch.clamp(1 + sign * rows, min=0)
        total = margins.sum() if self.norm == "L1" else (margins * margins).sum()
        return total / rows.shape[0]


class MultinomialLogisticLoss(nn.Module):
    def forward(self, probabilities, label):
        rows, target = _per_sample(probabilities, label)
        picked = rows.gather(1, target.unsqueeze(1))
        return -torch.log(_ClampMin.apply(picked, LOG_THRESHOLD)).sum() / rows.shape[0]


class InfogainLoss(nn.Module):
    """-sum H[label] . log(max(softmax, 1e-20)) over the normalizer; H a buffer (from `source`) or a bottom."""

    def __init__(self, axis, ignore_label, normalization, with_prob, matrix=None):
        super().__init__()
        self.axis, self.ignore_label, self.normalization, self.with_prob = axis, ignore_label, normalization, with_prob
        if matrix is not None:
            self.register_buffer("infogain", torch.as_tensor(matrix, dtype=torch.float32), persistent=False)

    def forward(self, scores, label, matrix=None):
        classes = scores.shape[self.axis]
        matrix = (self.infogain if matrix is None else matrix.detach()).reshape(classes, classes).to(scores.dtype)
        target = _labels(scores, label, self.axis)
        valid = target != self.ignore_label if self.ignore_label is not None else torch.ones_like(target, dtype=torch.bool)
        log_prob = _ClampMin.apply(F.log_softmax(scores, self.axis), math.log(LOG_THRESHOLD)).movedim(self.axis, -1)
        weights = matrix[torch.where(valid, target, 0)] * valid.unsqueeze(-1)  # H's row of each label; 0 if ignored
        total = -(weights * log_prob).sum()
        loss = normalized(total, self.normalization, target.numel(), scores.shape[0],
                          valid if self.ignore_label is not None else None)
        return (loss, F.softmax(scores, self.axis)) if self.with_prob else loss


class _CaffeContrastive(torch.autograd.Function):
    """Caffe's forward and backward (contrastive_loss_layer.cpp), the backward's d + 1e-4 included."""

    @staticmethod
    def forward(ctx, a, b, similar, margin, legacy):
        diff = a - b
        dist_sq = (diff * diff).sum(1)
        if legacy:
            dissimilar = torch.clamp(margin - dist_sq, min=0)
        else:
            dissimilar = torch.clamp(margin - dist_sq.sqrt(), min=0) ** 2
        loss = torch.where(similar, dist_sq, dissimilar).sum() / a.shape[0] / 2
        ctx.save_for_backward(diff, dist_sq, similar)
        ctx.margin, ctx.legacy = margin, legacy
        return loss

    @staticmethod
    def backward(ctx, grad):
        diff, dist_sq, similar = ctx.saved_tensors
        if ctx.legacy:
            mdist, beta = ctx.margin - dist_sq, -torch.ones_like(dist_sq)
        else:
            dist = dist_sq.sqrt()
            mdist = ctx.margin - dist
            beta = -mdist / (dist + 1e-4)
        scale = torch.where(similar, 1.0, torch.where(mdist > 0, beta, 0.0))
        grad_a = grad / diff.shape[0] * scale.unsqueeze(1) * diff
        return grad_a, -grad_a, None, None, None


class ContrastiveLoss(nn.Module):
    def __init__(self, margin, legacy):
        super().__init__()
        self.margin, self.legacy = margin, legacy

    def forward(self, a, b, similar):
        rows = a.shape[0]
        pairs = similar.detach().reshape(-1).to(torch.int64) != 0  # Caffe casts the label to int
        return _CaffeContrastive.apply(a.reshape(rows, -1), b.reshape(rows, -1), pairs, self.margin, self.legacy)


# ---------------------------------------------------------------- output

class HDF5Output(nn.Module):
    """Appends each pass's bottoms to the datasets `data` and `label` of an HDF5 file, emptied when built."""

    DATASETS = ("data", "label")

    def __init__(self, path):
        super().__init__()
        self.path = path
        import h5py
        with h5py.File(path, "w"):
            pass

    def forward(self, data, label):
        import h5py
        with h5py.File(self.path, "a") as file:
            for name, blob in zip(self.DATASETS, (data, label)):
                rows = blob.detach().to(torch.float32).cpu().numpy()
                if name not in file:
                    file.create_dataset(name, data=rows, maxshape=(None,) + rows.shape[1:], chunks=True)
                    continue
                dataset = file[name]
                dataset.resize(dataset.shape[0] + rows.shape[0], axis=0)
                dataset[-rows.shape[0]:] = rows
        return ()
