"""LeNet-5's trainable subsampling (LeCun et al. 1998, layers S2 and S4)."""
from __future__ import annotations

from ..fields import Bool, Int
from .fillers import FillerField, fill_blobs
from .base import Layer, ShapeError, numel, register, weight_and_bias


@register
class Subsampling(Layer):
    """Each output sums a k x k window of its map, multiplies the sum by the map's trainable coefficient and
    adds the map's trainable bias: 2 parameters per map. One layer rather than Pooling + Scale, so that
    LeCun's connection count (k*k inputs + 1 bias per output) and the MACs (1 per output) come out exact."""
    summary = "trainable subsampling: k x k sum x coefficient + bias, per map (LeNet-5's S2, S4)"
    blocks = {"subsampling_param": {
        "kernel_size": Int(2, "window size", minimum=1),
        "stride": Int(None, "stride (default: kernel_size, non-overlapping windows)", minimum=1),
        "bias_term": Bool(True, "learn a bias per map"),
        "weight_filler": FillerField("coefficient initialisation", default_value=1.0),
        "bias_filler": FillerField("bias initialisation"),
    }}
    kind = "pool"
    drawn_fields = ("kernel_size", "stride", "bias_term")
    drawn_always = ("kernel_size", "stride")

    def _geometry(self):
        k = self.p["kernel_size"]
        return k, self.p["stride"] or k

    def infer(self, shapes):
        shape = shapes[0]
        if len(shape) != 4:
            raise ShapeError("Subsampling needs a 4-D input (N, C, H, W)", expected="4 axes", found=f"shape {list(shape)}")
        k, s = self._geometry()
        if min(shape[2:]) < k:
            raise ShapeError("the input is smaller than the window", expected=f">= {k} x {k}",
                             found=f"{shape[2]} x {shape[3]}", path=("subsampling_param", "kernel_size"))
        return [(shape[0], shape[1], (shape[2] - k) // s + 1, (shape[3] - k) // s + 1)]

    def param_names(self):
        return weight_and_bias(self.p["bias_term"])

    def blob_specs(self, shapes):
        channels = (shapes[0][1],)
        return self.blob_list(weight=(channels, self.p["weight_filler"]), bias=(channels, self.p["bias_filler"]))

    def macs(self, shapes, outs):
        return numel(outs[0])  # the window's sum is additions; one multiply by the coefficient

    def connections(self, shapes, outs):
        k, _ = self._geometry()
        return numel(outs[0]) * (k * k + (1 if self.p["bias_term"] else 0))

    def build(self, shapes):
        from .modules import Subsampling as Module
        k, s = self._geometry()
        return fill_blobs(Module(shapes[0][1], k, s, self.p["bias_term"]), self.blob_specs(shapes))
