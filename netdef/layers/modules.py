"""torch.nn modules for Caffe layers that PyTorch has no exact equivalent of. Imported only when a net
is compiled, so that `netdef check` and `summary` never import torch."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class _EachBottom:
    """Mixin: the layer applied to each of several bottoms with the same weights (Caffe's multi-bottom
    convolution). A subclass, not a wrapper, so that parameters stay `conv.weight`, `conv.bias`."""

    def forward(self, *xs):
        forward_one = super().forward
        return tuple(forward_one(x) for x in xs)


class MaskedConv2d(nn.Conv2d):
    """A convolution whose output map o reads only the input maps in connection_table[o] (LeNet-5's C3).
    The weight is stored dense; the mask keeps absent connections at zero in forward and in gradients."""

    def __init__(self, in_channels, out_channels, kernel, stride, pad, dilation, bias, table):
        super().__init__(in_channels, out_channels, kernel, stride, pad, dilation, 1, bias)
        mask = torch.zeros(out_channels, in_channels, 1, 1)
        for o, row in enumerate(table):
            mask[o, list(row), 0, 0] = 1.0
        self.register_buffer("mask", mask, persistent=False)

    def apply_mask(self):
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def _conv_forward(self, x, weight, bias):
        return super()._conv_forward(x, weight * self.mask, bias)


class EachBottomConv2d(_EachBottom, nn.Conv2d):
    pass


class EachBottomMaskedConv2d(_EachBottom, MaskedConv2d):
    pass


class EachBottomConvTranspose2d(_EachBottom, nn.ConvTranspose2d):
    pass


EACH_BOTTOM = {nn.Conv2d: EachBottomConv2d, MaskedConv2d: EachBottomMaskedConv2d,
               nn.ConvTranspose2d: EachBottomConvTranspose2d}


class PaddedPool2d(nn.Module):
    """Pooling whose padding exceeds half the window, which Caffe allows (pad < kernel) and PyTorch does not:
    pads explicitly (-inf for MAX, which ignores padding; zeros for AVE, whose divisor counts padding but
    not the ceil overhang) and crops to Caffe's output size."""

    def __init__(self, pool, kernel, stride, pad, out_size):
        super().__init__()
        self.pool = F.max_pool2d if pool == "MAX" else F.avg_pool2d
        self.fill = -math.inf if pool == "MAX" else 0.0
        self.kernel, self.stride, self.pad, self.out_size = kernel, stride, pad, out_size

    def forward(self, x):
        (ph, pw), (oh, ow) = self.pad, self.out_size
        x = F.pad(x, (pw, pw, ph, ph), value=self.fill)
        return self.pool(x, self.kernel, self.stride, 0, ceil_mode=True)[..., :oh, :ow]


class InnerProduct(nn.Module):
    def __init__(self, in_features, out_features, bias, axis, transpose):
        super().__init__()
        shape = (in_features, out_features) if transpose else (out_features, in_features)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.axis, self.transpose = axis, transpose

    def forward(self, x):
        if x.dim() != self.axis + 1:
            x = x.flatten(self.axis)
        weight = self.weight.t() if self.transpose else self.weight
        return F.linear(x, weight, self.bias)


class WithinChannelLRN(nn.Module):
    """Caffe's WITHIN_CHANNEL LRN: x / (1 + alpha/n^2 * sum of squares over an n x n window)^beta."""

    def __init__(self, size, alpha, beta):
        super().__init__()
        self.size, self.alpha, self.beta = size, alpha, beta

    def forward(self, x):
        mean_sq = F.avg_pool2d(x * x, self.size, 1, (self.size - 1) // 2, count_include_pad=True)
        return x * (1 + self.alpha * mean_sq).pow(-self.beta)


class CaffeBatchNorm(nn.Module):
    """Caffe's BatchNorm: no affine part; statistics kept as Caffe keeps them (sums and a scale factor),
    so that a converted .caffemodel and netdef agree. Uses batch statistics unless use_global_stats."""

    def __init__(self, channels, eps, moving_average_fraction, use_global_stats):
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("variance", torch.zeros(channels))
        self.register_buffer("scale_factor", torch.zeros(1))
        self.eps, self.fraction, self.use_global_stats = eps, moving_average_fraction, use_global_stats
        # The solver's sync_bn under data-parallel training: batch statistics over every rank's batch.
        self.sync_batch_statistics = False

    def forward(self, x):
        global_stats = self.use_global_stats if self.use_global_stats is not None else not self.training
        if global_stats:
            factor = self.scale_factor.clamp_min(1e-30).reciprocal() * (self.scale_factor != 0)
            return F.batch_norm(x, self.mean * factor, self.variance * factor, None, None, False, 0.0, self.eps)
        dims = [d for d in range(x.dim()) if d != 1]
        if self.training and self.sync_batch_statistics:
            return self._synced(x, dims)
        if self.training:
            with torch.no_grad():
                var, mean = torch.var_mean(x, dim=dims, correction=0)
                self._record(mean, var, x.numel() // x.shape[1])
        return F.batch_norm(x, None, None, None, None, True, 0.0, self.eps)

    def _record(self, mean, var, m):
        """Caffe's running sums: the statistics of a batch of m values per channel (variance unbiased)."""
        with torch.no_grad():
            self.scale_factor.mul_(self.fraction).add_(1)
            self.mean.mul_(self.fraction).add_(mean)
            self.variance.mul_(self.fraction).add_(var, alpha=m / max(m - 1, 1))

    def _synced(self, x, dims):
        """Batch normalisation over the batches of all ranks (what torch's SyncBatchNorm does): the per-channel
        sums are all-reduced, with their gradients, so that N ranks at batch B normalise as one process at
        batch N x B. Two passes (mean, then squared deviations), as exact as var_mean."""
        from torch.distributed.nn.functional import all_reduce
        view = [1, x.shape[1]] + [1] * (x.dim() - 2)
        count = torch.full((1,), x.numel() // x.shape[1], dtype=x.dtype, device=x.device)
        totals = all_reduce(torch.cat([x.sum(dims), count]))
        m = totals[-1]
        mean = totals[:-1] / m
        centred = x - mean.reshape(view)
        var = all_reduce(centred.square().sum(dims)) / m
        self._record(mean.detach(), var.detach(), int(m.item()))
        return centred * torch.rsqrt(var.reshape(view) + self.eps)


def _broadcast_shape(x_shape, axis, num_params_axes):
    return [1] * axis + list(x_shape[axis:axis + num_params_axes]) + [1] * (len(x_shape) - axis - num_params_axes)


class Scale(nn.Module):
    """y = x * gamma (+ beta), gamma spanning axes [axis, axis + num_axes); gamma may be a second bottom."""

    def __init__(self, shape, axis, bias, learn_scale=True):
        super().__init__()
        self.axis, self.nd = axis, len(shape)
        self.weight = nn.Parameter(torch.empty(shape)) if learn_scale else None
        self.bias = nn.Parameter(torch.empty(shape)) if bias else None

    def forward(self, x, scale=None):
        view = _broadcast_shape(x.shape, self.axis, self.nd)
        gamma = (scale if scale is not None else self.weight).reshape(view)
        if self.bias is not None:
            return torch.addcmul(self.bias.reshape(view), x, gamma)
        return x * gamma


class Bias(nn.Module):
    """y = x + beta, beta spanning axes [axis, axis + len(shape)); beta may be a second bottom."""

    def __init__(self, shape, axis, learn_bias=True):
        super().__init__()
        self.axis, self.nd = axis, len(shape)
        self.bias = nn.Parameter(torch.empty(shape)) if learn_bias else None

    def forward(self, x, bias=None):
        view = _broadcast_shape(x.shape, self.axis, self.nd)
        return x + (bias if bias is not None else self.bias).reshape(view)


class PReLU(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels))

    def forward(self, x):
        return F.prelu(x, self.weight)


class _Affine(nn.Module):
    """Base of the elementwise functions of (shift + scale * x): plain modules with their constants as
    attributes (no closures), so a compiled net pickles and deep-copies whole."""

    def __init__(self, scale, shift):
        super().__init__()
        self.scale, self.shift = scale, shift


class Power(_Affine):
    def __init__(self, power, scale, shift):
        super().__init__(scale, shift)
        self.power = power

    def extra_repr(self):
        return f"({self.shift} + {self.scale}x)^{self.power}"

    def forward(self, x):
        return (self.shift + self.scale * x).pow(self.power)


class Exp(_Affine):
    """base^(shift + scale x); base -1 means e."""

    def __init__(self, base, scale, shift):
        super().__init__(scale, shift)
        self.base, self.log_base = base, 1.0 if base == -1 else math.log(base)

    def extra_repr(self):
        return f"{self.base}^({self.shift} + {self.scale}x)"

    def forward(self, x):
        return torch.exp(self.log_base * (self.shift + self.scale * x))


class Log(_Affine):
    """log_base(shift + scale x); base -1 means e."""

    def __init__(self, base, scale, shift):
        super().__init__(scale, shift)
        self.base, self.inverse_log_base = base, 1.0 if base == -1 else 1.0 / math.log(base)

    def extra_repr(self):
        return f"log_{self.base}({self.shift} + {self.scale}x)"

    def forward(self, x):
        return torch.log(self.shift + self.scale * x) * self.inverse_log_base


class ScaledTanH(nn.Module):
    """scale_out * tanh(scale_in * x) (LeCun's 1.7159 tanh(2x/3))."""

    def __init__(self, scale_out, scale_in):
        super().__init__()
        self.scale_out, self.scale_in = scale_out, scale_in

    def extra_repr(self):
        return f"{self.scale_out} * tanh({self.scale_in} x)"

    def forward(self, x):
        return self.scale_out * torch.tanh(self.scale_in * x)


class AbsVal(nn.Module):
    def forward(self, x):
        return torch.abs(x)


class Eltwise(nn.Module):
    def __init__(self, operation, coeffs):
        super().__init__()
        self.operation, self.coeffs = operation, coeffs

    def forward(self, *xs):
        if self.operation == "PROD":
            out = xs[0]
            for x in xs[1:]:
                out = out * x
            return out
        if self.operation == "MAX":
            out = xs[0]
            for x in xs[1:]:
                out = torch.maximum(out, x)
            return out
        if all(c == 1 for c in self.coeffs):
            out = xs[0]
            for x in xs[1:]:
                out = out + x
            return out
        out = xs[0] * self.coeffs[0]
        for c, x in zip(self.coeffs[1:], xs[1:]):
            out = out + c * x
        return out


class Concat(nn.Module):
    def __init__(self, axis):
        super().__init__()
        self.axis = axis

    def forward(self, *xs):
        return torch.cat(xs, self.axis)


class Slice(nn.Module):
    def __init__(self, axis, sizes):
        super().__init__()
        self.axis, self.sizes = axis, sizes

    def forward(self, x):
        return tuple(torch.split(x, self.sizes, self.axis))


class Split(nn.Module):
    def __init__(self, count):
        super().__init__()
        self.count = count

    def forward(self, x):
        return (x,) * self.count


class Reshape(nn.Module):
    def __init__(self, shape, keep_batch):
        super().__init__()
        # A reshape that keeps the batch axis follows the batch it is given; one that folds it cannot.
        self.shape, self.keep_batch = tuple(shape[1:]) if keep_batch else tuple(shape), keep_batch

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape) if self.keep_batch else x.reshape(self.shape)


class Flatten(nn.Module):
    def __init__(self, axis, end_axis):
        super().__init__()
        self.axis, self.end_axis = axis, end_axis

    def forward(self, x):
        return x.flatten(self.axis, self.end_axis)


class Softmax(nn.Module):
    def __init__(self, axis):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        return F.softmax(x, self.axis)


def _labels(scores, label, axis):
    """Caffe labels are floats shaped N (x 1 x ...); class indices for cross-entropy."""
    shape = list(scores.shape)
    del shape[axis]
    return label.reshape(shape).long()


def normalized(total, normalization, count, batch, valid=None):
    """`total` over Caffe's normalizer (LossLayer::GetNormalizer): FULL all `count` positions, VALID the
    `valid` ones, BATCH_SIZE the batch, NONE 1; never below 1, so that all labels ignored give 0, not NaN."""
    if normalization == "VALID" and valid is not None:
        return total / valid.sum().clamp_min(1)
    divisor = {"FULL": count, "VALID": count, "BATCH_SIZE": batch, "NONE": 1}[normalization]
    return total / max(divisor, 1)


def _cross_entropy_sum(logits, target, ignore):
    """Summed cross-entropy of class scores N x C x ...; a label outside the C classes (a damaged data
    record's) is bad input, named by its value. CPU only: on CUDA it stops at a device-side assert."""
    try:
        return F.cross_entropy(logits, target, ignore_index=ignore, reduction="sum")
    except IndexError:
        from ..errors import NetdefError, Problem
        classes = logits.shape[1]
        outside = target[(target != ignore) & ((target < 0) | (target >= classes))]
        raise NetdefError(Problem(f"a label is outside the {classes} classes a SoftmaxWithLoss scores",
                                  expected=f"labels 0 to {classes - 1}", found=f"label {int(outside[0])}",
                                  hint="the data's labels do not fit the net (num_output of the layer before "
                                       "the loss), or a record is damaged")) from None


class SoftmaxWithLoss(nn.Module):
    def __init__(self, axis, ignore_label, normalization, with_prob):
        super().__init__()
        self.axis, self.ignore_label, self.normalization = axis, ignore_label, normalization
        self.with_prob = with_prob

    def forward(self, scores, label):
        target = _labels(scores, label, self.axis)
        logits = scores.movedim(self.axis, 1) if self.axis != 1 else scores
        ignore = self.ignore_label if self.ignore_label is not None else -100
        total = _cross_entropy_sum(logits, target, ignore)
        valid = target != ignore if self.ignore_label is not None else None
        loss = normalized(total, self.normalization, target.numel(), scores.shape[0], valid)
        if self.with_prob:
            return loss, F.softmax(scores, self.axis)
        return loss


class SigmoidCrossEntropyLoss(nn.Module):
    def __init__(self, ignore_label, normalization):
        super().__init__()
        self.ignore_label, self.normalization = ignore_label, normalization

    def forward(self, scores, targets):
        targets = targets.reshape(scores.shape)
        losses = F.binary_cross_entropy_with_logits(scores, targets, reduction="none")
        valid = None
        if self.ignore_label is not None:
            valid = targets != self.ignore_label
            losses = losses * valid
        return normalized(losses.sum(), self.normalization, targets.numel(), scores.shape[0], valid)


class EuclideanLoss(nn.Module):
    def forward(self, a, b):
        return (a - b.reshape(a.shape)).pow(2).sum() / (2 * a.shape[0])


class Accuracy(nn.Module):
    def __init__(self, top_k, axis, ignore_label):
        super().__init__()
        self.top_k, self.axis, self.ignore_label = top_k, axis, ignore_label

    def forward(self, scores, label):
        with torch.no_grad():
            target = _labels(scores, label, self.axis)
            top = scores.topk(self.top_k, self.axis).indices
            hit = (top == target.unsqueeze(self.axis)).any(self.axis)
            if self.ignore_label is not None:
                valid = target != self.ignore_label
                return hit[valid].float().sum() / valid.sum().clamp_min(1)
            return hit.float().mean()


class ArgMax(nn.Module):
    def __init__(self, top_k, axis, out_max_val):
        super().__init__()
        self.top_k, self.axis, self.out_max_val = top_k, axis, out_max_val

    def forward(self, x):
        if self.axis is None:
            flat = x.flatten(1)
            values, indices = flat.topk(self.top_k, 1)
            out = torch.stack([indices.to(x.dtype), values], 1) if self.out_max_val else indices.to(x.dtype).unsqueeze(1)
            return out
        values, indices = x.topk(self.top_k, self.axis)
        return values if self.out_max_val else indices.to(x.dtype)


class Subsampling(nn.Module):
    """LeNet-5's S2/S4: k x k window sum times a per-map coefficient, plus a per-map bias."""

    def __init__(self, channels, kernel, stride, bias):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels)) if bias else None

    def forward(self, x):
        window_sum = F.avg_pool2d(x, self.kernel, self.stride) * (self.kernel * self.kernel)
        out = window_sum * self.weight.view(1, -1, 1, 1)
        return out + self.bias.view(1, -1, 1, 1) if self.bias is not None else out


class RBF(nn.Module):
    """Euclidean RBF units: y_i = sum_j (x_j - w_ij)^2, the input flattened from `axis`."""

    def __init__(self, in_features, out_features, axis):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.axis = axis

    def forward(self, x):
        x = x.flatten(self.axis)
        return (x.unsqueeze(-2) - self.weight).pow(2).sum(-1)


class RBFLoss(nn.Module):
    """Mean over the batch of the correct class's penalty, plus log(e^-j + sum_i e^-y_i) when j is given."""

    def __init__(self, axis, j):
        super().__init__()
        self.axis, self.j = axis, j

    def forward(self, penalties, label):
        target = _labels(penalties, label, self.axis).unsqueeze(self.axis)
        loss = penalties.gather(self.axis, target).squeeze(self.axis)
        if self.j is not None:
            competitors = torch.cat([-penalties, torch.full_like(target, -self.j, dtype=penalties.dtype)], self.axis)
            loss = loss + torch.logsumexp(competitors, self.axis)
        return loss.mean()
