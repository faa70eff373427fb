"""Caffe's weight fillers (include/caffe/filler.hpp), with its fan conventions."""
from __future__ import annotations

import math

from ..fields import Block, Enum, Float, Int

FILLERS = {}


def filler(name):
    def register(fn):
        FILLERS[name] = fn
        return fn
    return register


def _fans(shape):
    count = math.prod(shape)
    fan_in = count // shape[0] if shape else 1
    fan_out = count // shape[1] if len(shape) > 1 else count
    return fan_in, fan_out


def _fan(spec, shape):
    fan_in, fan_out = _fans(shape)
    return {"FAN_IN": fan_in, "FAN_OUT": fan_out, "AVERAGE": (fan_in + fan_out) / 2}[spec["variance_norm"]]


@filler("constant")
def _constant(tensor, spec):
    tensor.fill_(spec["value"])


@filler("uniform")
def _uniform(tensor, spec):
    tensor.uniform_(spec["min"], spec["max"])


@filler("gaussian")
def _gaussian(tensor, spec):
    tensor.normal_(spec["mean"], spec["std"])
    if spec["sparse"] >= 0:
        # Caffe keeps each weight with probability sparse / num_outputs (num_outputs = shape[0]).
        keep = spec["sparse"] / tensor.shape[0]
        tensor.mul_(tensor.new_empty(tensor.shape).bernoulli_(min(keep, 1.0)))


@filler("positive_unitball")
def _positive_unitball(tensor, spec):
    tensor.uniform_(0, 1)
    rows = tensor.view(tensor.shape[0], -1)
    rows.div_(rows.sum(dim=1, keepdim=True))


@filler("xavier")
def _xavier(tensor, spec):
    bound = math.sqrt(3.0 / _fan(spec, tuple(tensor.shape)))
    tensor.uniform_(-bound, bound)


@filler("msra")
def _msra(tensor, spec):
    tensor.normal_(0.0, math.sqrt(2.0 / _fan(spec, tuple(tensor.shape))))


@filler("bilinear")
def _bilinear(tensor, spec):
    # The upsampling kernel of Caffe's BilinearFiller, the same for every (out, in) pair.
    size = tensor.shape[-1]
    factor = math.ceil(size / 2)
    center = (2 * factor - 1 - factor % 2) / (2.0 * factor)
    import torch
    coords = torch.arange(size, dtype=tensor.dtype)
    weights = 1 - (coords / factor - center).abs()
    tensor.copy_((weights[:, None] * weights[None, :]).expand_as(tensor))


def FillerField(doc, default_type="constant", default_value=0.0, **kw):
    """A Caffe FillerParameter block; absent, it defaults to `default_type` with `default_value`."""
    return Block({
        "type": Enum(sorted(FILLERS), default_type, "filler kind"),
        "value": Float(default_value, "constant value"),
        "min": Float(0.0, "uniform lower bound"),
        "max": Float(1.0, "uniform upper bound"),
        "mean": Float(0.0, "gaussian mean"),
        "std": Float(1.0, "gaussian standard deviation (ignored by xavier/msra)"),
        "sparse": Int(-1, "gaussian: expected non-zero weights per output (-1: dense)"),
        "variance_norm": Enum(["FAN_IN", "FAN_OUT", "AVERAGE"], "FAN_IN", "xavier/msra fan"),
    }, doc, ref="filler", **kw)


def fill(tensor, spec):
    """Fill `tensor` in place according to a (defaulted) filler block."""
    import torch
    with torch.no_grad():
        FILLERS[spec["type"]](tensor, spec)


def fill_blobs(module, blobs):
    """Fill a built module's blobs from their BlobSpec fillers, in the order the layer lists them
    (blobs without a filler are set by the layer itself)."""
    for blob in blobs:
        if blob.filler is not None:
            fill(getattr(module, blob.name), blob.filler)
    return module
