"""Caffe's spatial layers past convolution and pooling: SPP (spatial pyramid pooling, spp_layer.cpp) and
Im2col (the patches a convolution multiplies, im2col_layer.cpp)."""
from __future__ import annotations

import math

from ..fields import Enum, Int
from .base import Layer, ShapeError, numel, register
from .vision import _check_kernel, _conv_fields, _kernel_field, _pair, _spatial_input, conv_output_sizes

GEOMETRY_FIELDS = ("kernel_size", "kernel_h", "kernel_w", "stride", "stride_h", "stride_w", "pad", "pad_h", "pad_w",
                   "dilation", "axis")


def caffe_pooled_size(size, kernel, stride, pad) -> int:
    """Caffe's pooling output size: rounded up, less one if the last window would start in the right padding."""
    out = math.ceil((size + 2 * pad - kernel) / stride) + 1
    return out - 1 if pad and (out - 1) * stride >= size + pad else out


@register
class SPP(Layer):
    """He et al.'s spatial pyramid pooling: level l (0 .. pyramid_height - 1) pools each map into 2^l x 2^l
    bins (window ceil(H / bins), stride the window, padding (window x bins - H + 1) / 2, as Caffe), and the
    levels, flattened, are concatenated: N x C * sum of 4^l, whatever the input's height and width."""
    summary = "spatial pyramid pooling (pyramid_height levels of 2^l x 2^l bins)"
    blocks = {"spp_param": {"pyramid_height": Int(None, "number of pyramid levels", required=True, minimum=1),
                            "pool": Enum(["MAX", "AVE", "STOCHASTIC"], "MAX", "pooling method of every level "
                                         "(STOCHASTIC: sizes divisible by the finest bins, as it takes no padding)"),
                            "engine": Enum(["DEFAULT", "CAFFE", "CUDNN"], "DEFAULT", "accepted for Caffe compatibility")}}
    kind = "pool"
    drawn_fields = ("pyramid_height", "pool")
    drawn_always = ("pyramid_height",)

    def levels(self, shape) -> list:
        """(kernel, pad, output size) per axis (h, w) of each level."""
        _spatial_input(shape, "SPP")
        levels = []
        for level in range(self.p["pyramid_height"]):
            bins, axes = 2 ** level, []
            for size in shape[2:]:
                kernel = math.ceil(size / bins)
                pad = (kernel * bins - size + 1) // 2
                if pad and self.p["pool"] == "STOCHASTIC":
                    raise ShapeError(f"STOCHASTIC pooling takes no padding (as Caffe), so {bins} x {bins} bins need "
                                     f"sizes divisible by {bins}", found=f"shape {list(shape)}",
                                     path=("spp_param", "pool"))
                if pad >= kernel:
                    raise ShapeError(f"the input is too small for {bins} x {bins} pyramid bins",
                                     expected=f"sizes whose bin padding is under the window (Caffe's pooling: pad < "
                                              f"kernel; here pad {pad}, kernel {kernel})", found=f"shape {list(shape)}",
                                     path=("spp_param", "pyramid_height"))
                axes.append((kernel, pad, caffe_pooled_size(size, kernel, kernel, pad)))
            levels.append(tuple(zip(*axes)))  # (kernels, pads, sizes), each (h, w)
        return levels

    def infer(self, shapes):
        n, c = shapes[0][:2]
        return [(n, c * sum(numel(sizes) for _, _, sizes in self.levels(shapes[0])))]

    def connections(self, shapes, outs):
        n, c = shapes[0][:2]
        return sum(n * c * numel(sizes) * numel(kernels) for kernels, _, sizes in self.levels(shapes[0]))

    def build(self, shapes):
        from .catalogue_modules import SpatialPyramidPool
        return SpatialPyramidPool(self.p["pool"], self.levels(shapes[0]))


@register
class Im2col(Layer):
    """The patches a convolution with these kernel, stride, pad and dilation fields would multiply, as
    channels: N x (C kh kw) x H_out x W_out, channel index (c kh + i) kw + j for input channel c and kernel
    cell (i, j), as Caffe's im2col; out-of-image cells are 0."""
    summary = "convolution patches as channels (convolution_param geometry)"
    blocks = {"convolution_param": {name: field for name, field in _conv_fields().items() if name in GEOMETRY_FIELDS}}
    drawn_fields = ("kernel_size", "stride", "pad", "dilation")
    drawn_always = ("kernel_size",)

    def output_size_field(self):
        return _kernel_field(self.spec.raw, "convolution_param")

    def check(self):
        return _check_kernel(self.p, most=2)

    def geometry(self):
        p = self.p
        return _pair(p, "kernel_size", None), _pair(p, "stride", 1), _pair(p, "pad", 0), _pair(p, "dilation", 1)

    def infer(self, shapes):
        _spatial_input(shapes[0], "Im2col")
        n, c, *sizes = shapes[0]
        kernel, stride, pad, dilation = self.geometry()
        return [(n, c * numel(kernel), *conv_output_sizes(sizes, kernel, stride, pad, dilation))]

    def build(self, shapes):
        from .catalogue_modules import Im2col as Module
        return Module(*self.geometry(), self.infer(shapes)[0][2:])
