"""LocallyConnected: an unshared convolution, each output position with its own kernel."""
from __future__ import annotations

from ..fields import Bool, Int
from .base import Layer, ShapeError, numel, register, weight_and_bias
from .fillers import FillerField, fill_blobs
from .vision import conv_output_sizes


@register
class LocallyConnected(Layer):
    """Every output position (i, j) has its own num_output x C x k x k kernel over its k x k input window:
    a convolution without weight sharing. The weight is [out_h*out_w, num_output, C*k*k] (one kernel per
    position, its window flattened as torch's unfold lays it out), the bias [num_output, out_h, out_w];
    output size as Convolution's: (in + 2*pad - k) // stride + 1."""
    summary = "unshared convolution: one kernel per output position (weight [out_h*out_w, num_output, C*k*k])"
    blocks = {"local_param": {
        "num_output": Int(None, "number of output channels", required=True, minimum=1),
        "kernel_size": Int(None, "kernel size (square)", required=True, minimum=1),
        "stride": Int(1, "stride", minimum=1),
        "pad": Int(0, "zero padding", minimum=0),
        "bias_term": Bool(True, "learn a bias per output channel and position"),
        "weight_filler": FillerField("weight initialisation (default constant 0, as Caffe)"),
        "bias_filler": FillerField("bias initialisation"),
    }}
    kind = "conv"
    drawn_fields = ("num_output", "kernel_size", "stride", "pad", "bias_term")
    drawn_always = ("num_output", "kernel_size", "stride", "pad")

    def output_size_field(self):
        return ("local_param", "kernel_size")

    def _output_plane(self, shape) -> tuple:
        if len(shape) != 4:
            raise ShapeError("LocallyConnected needs a 4-D input (N, C, H, W)", expected="4 axes",
                             found=f"shape {list(shape)}")
        p = self.p
        k = p["kernel_size"]
        return conv_output_sizes(shape[2:], (k, k), (p["stride"],) * 2, (p["pad"],) * 2, (1, 1))

    def _window(self, shape) -> int:
        """Inputs one output value reads: C x k x k."""
        return shape[1] * self.p["kernel_size"] ** 2

    def infer(self, shapes):
        return [(shapes[0][0], self.p["num_output"], *self._output_plane(shapes[0]))]

    def param_names(self):
        return weight_and_bias(self.p["bias_term"])

    def blob_specs(self, shapes):
        p, plane = self.p, self._output_plane(shapes[0])
        return self.blob_list(weight=((numel(plane), p["num_output"], self._window(shapes[0])), p["weight_filler"]),
                              bias=((p["num_output"], *plane), p["bias_filler"]))

    def macs(self, shapes, outs):
        return numel(outs[0]) * self._window(shapes[0])

    def build(self, shapes):
        from .local_modules import LocallyConnected2d
        p, plane = self.p, self._output_plane(shapes[0])
        module = LocallyConnected2d(shapes[0][1], p["num_output"], p["kernel_size"], p["stride"], p["pad"],
                                    plane, p["bias_term"])
        return fill_blobs(module, self.blob_specs(shapes))
