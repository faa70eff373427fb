"""Spatial layers: Convolution, Deconvolution (2-D and 3-D), Pooling, LRN."""
from __future__ import annotations

import math

from ..fields import Bool, Enum, Float, Int
from .fillers import FillerField, fill_blobs
from .base import Layer, ShapeError, numel, register, weight_and_bias


def _pair(p, base, default):
    """Caffe's `kernel_size` (one value or one per axis) or its `kernel_h`/`kernel_w` alternative."""
    short = {"kernel_size": "kernel", "pad": "pad", "stride": "stride"}.get(base, base)
    h, w = p.get(f"{short}_h"), p.get(f"{short}_w")
    if h is not None or w is not None:
        return (h if h is not None else default, w if w is not None else default)
    values = p.get(base) or []
    if not values:
        return (default, default)
    return (values[0], values[-1]) if len(values) <= 2 else (values[0], values[1])


def _check_pairs(p, block, names, most=2):
    for base in names:
        short = {"kernel_size": "kernel"}.get(base, base)
        given = p.get(base) or []
        if given and (p.get(f"{short}_h") is not None or p.get(f"{short}_w") is not None):
            yield ((block, base), f"'{base}' cannot be combined with '{short}_h'/'{short}_w'", None, None)
        if len(given) > most:
            yield ((block, base), f"'{base}' has too many values for a {most}-D layer", f"1 or {most} values",
                   str(len(given)))


def _check_kernel(p, most):
    """A convolution_param's geometry before shapes: the per-axis fields, and a kernel size given."""
    yield from _check_pairs(p, "convolution_param", ("kernel_size", "pad", "stride"), most)
    if not p["kernel_size"] and (p["kernel_h"] is None or p["kernel_w"] is None):
        yield (("convolution_param",), "missing kernel size", "'kernel_size' or both 'kernel_h' and 'kernel_w'", None)


def conv_output_sizes(sizes, kernel, stride, pad, dilation) -> tuple:
    """A convolution's output size on each spatial axis (rounded down, as Caffe)."""
    return tuple((size + 2 * p - (d * (k - 1) + 1)) // s + 1
                 for size, k, s, p, d in zip(sizes, kernel, stride, pad, dilation))


def _per_axis(p, base, default, spatial):
    """A per-spatial-axis field: one value for all axes or one per axis (2-D also takes the _h/_w forms)."""
    if spatial == 2:
        return _pair(p, base, default)
    values = p.get(base) or []
    return tuple(values) if len(values) == spatial else (values[0] if values else default,) * spatial


CONV_AXES_FIELDS = ("kernel_size", "stride", "pad", "dilation")
HW_FIELDS = ("kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w")


def _kernel_field(raw: dict, block: str) -> tuple:
    """The kernel field as the file writes it (kernel_size, or kernel_h/kernel_w): what empties an output."""
    written = raw.get(block) or {}
    name = next((n for n in ("kernel_size", "kernel_h", "kernel_w") if n in written), "kernel_size")
    return (block, name)


def _spatial_input(shape, layer):
    if len(shape) != 4:
        raise ShapeError(f"{layer} needs a 4-D input (N, C, H, W)", expected="4 axes",
                         found=f"shape {list(shape)}")


def _conv_fields():
    return {
        "num_output": Int(None, "number of output channels", required=True, minimum=1),
        "bias_term": Bool(True, "learn a bias per output channel"),
        "pad": Int(None, "zero padding (one value, or one per spatial axis)", repeated=True, minimum=0),
        "kernel_size": Int(None, "kernel size (one value, or one per spatial axis)", repeated=True, minimum=1),
        "stride": Int(None, "stride (one value, or one per spatial axis); default 1", repeated=True, minimum=1),
        "dilation": Int(None, "dilation (one value, or one per spatial axis); default 1", repeated=True, minimum=1),
        "pad_h": Int(None, "vertical padding", minimum=0), "pad_w": Int(None, "horizontal padding", minimum=0),
        "kernel_h": Int(None, "kernel height", minimum=1), "kernel_w": Int(None, "kernel width", minimum=1),
        "stride_h": Int(None, "vertical stride", minimum=1), "stride_w": Int(None, "horizontal stride", minimum=1),
        "group": Int(1, "split channels into this many independent groups", minimum=1),
        "weight_filler": FillerField("weight initialisation (default constant 0, as Caffe)"),
        "bias_filler": FillerField("bias initialisation"),
        "connection_table": Int(None, "partial connection table (LeNet-5's C3): for each output map, "
                                      "the input maps it reads", list_of=True, repeated=True),
        "axis": Int(1, "channel axis (only 1 is supported)", minimum=1, maximum=1),
        "engine": Enum(["DEFAULT", "CAFFE", "CUDNN"], "DEFAULT", "accepted for Caffe compatibility"),
    }


class _ConvBase(Layer):
    blocks = {"convolution_param": _conv_fields()}
    bottoms = (1, None)
    tops = (1, None)
    kind = "conv"
    drawn_fields = ("num_output", "kernel_size", "stride", "pad", "kernel_h", "kernel_w", "stride_h", "stride_w",
                    "pad_h", "pad_w", "group", "dilation", "axis", "bias_term")
    drawn_always = ("num_output", "kernel_size", "stride", "pad")

    def output_size_field(self):
        return _kernel_field(self.spec.raw, "convolution_param")

    def geometry(self, spatial=2):
        """(kernel, stride, pad, dilation), each one value per spatial axis."""
        return tuple(_per_axis(self.p, base, default, spatial)
                     for base, default in zip(CONV_AXES_FIELDS, (None, 1, 0, 1)))

    def check(self):
        p = self.p
        yield from _check_kernel(p, most=3)
        if p["num_output"] and p["num_output"] % p["group"]:
            yield (("convolution_param", "group"), "'num_output' must be divisible by 'group'",
                   f"a divisor of {p['num_output']}", str(p["group"]))
        if len(self.spec.tops) != len(self.spec.bottoms):
            yield (("top",), "a convolution has one top per bottom", f"{len(self.spec.bottoms)} tops",
                   str(len(self.spec.tops)))

    def spatial_axes(self, shapes) -> int:
        """2 for N x C x H x W bottoms, 3 for N x C x D x H x W (video, volumes: Caffe's N-D convolution, one
        bottom, no connection_table); every per-axis field must give one value or one per axis."""
        shape, layer = shapes[0], type(self).__name__
        if len(shape) not in (4, 5):
            raise ShapeError(f"{layer} needs a 4-D (N, C, H, W) or 5-D (N, C, D, H, W) input", expected="4 or 5 axes",
                             found=f"shape {list(shape)}")
        spatial = len(shape) - 2
        for base in CONV_AXES_FIELDS:
            count = len(self.p[base] or [])
            if count > spatial:
                raise ShapeError(f"'{base}' has too many values for a {spatial}-D layer", expected=f"1 or {spatial} values",
                                 found=str(count), path=("convolution_param", base))
            if count not in (0, 1, spatial):
                raise ShapeError(f"'{base}' needs one value, or one per spatial axis", expected=f"1 or {spatial} values",
                                 found=str(count), path=("convolution_param", base))
        if spatial == 3:
            plane_only = [name for name in HW_FIELDS if self.p[name] is not None] + \
                         ["connection_table"] * bool(self.p.get("connection_table"))
            if plane_only:
                raise ShapeError(f"'{plane_only[0]}' is for 2-D convolutions", path=("convolution_param", plane_only[0]),
                                 expected="a 3-D convolution's fields with one value or one per axis (kernel_size, ...)")
            if len(shapes) > 1:
                raise ShapeError(f"a 3-D {layer} takes one bottom", expected="1 bottom", found=str(len(shapes)))
        return spatial

    def _channels(self, shapes):
        self.spatial_axes(shapes)
        if any(tuple(s) != tuple(shapes[0]) for s in shapes):
            raise ShapeError("all bottoms of a convolution must have the same shape",
                             found=", ".join(str(list(s)) for s in shapes))
        channels = shapes[0][1]
        if channels % self.p["group"]:
            raise ShapeError("input channels must be divisible by 'group'", expected=f"a multiple of {self.p['group']}",
                             found=f"{channels} channels", path=("convolution_param", "group"))
        return channels

    def param_names(self):
        return weight_and_bias(self.p["bias_term"])

    def blob_specs(self, shapes):
        kernel, *_ = self.geometry(self.spatial_axes(shapes))
        p = self.p
        weight = self.weight_shape(self._channels(shapes), kernel)
        return self.blob_list(weight=(weight, p["weight_filler"], {"count": self.weight_count(weight)}),
                              bias=((p["num_output"],), p["bias_filler"]))

    def weight_count(self, weight) -> int | None:
        """Learnable values of the weight (None: all of them)."""
        return None

    def _init(self, module, shapes):
        return fill_blobs(module, self.blob_specs(shapes))


@register
class Convolution(_ConvBase):
    """2-D or 3-D convolution (N x C x D x H x W input, one value or one per axis in kernel_size, stride, pad,
    dilation: Caffe's N-D convolution); output size rounds down: (in + 2*pad - (dilation*(k-1)+1)) // stride + 1."""
    summary = "2-D and 3-D convolution (group, dilation, _h/_w forms, connection_table)"

    def weight_shape(self, channels, kernel):
        return (self.p["num_output"], channels // self.p["group"], *kernel)

    def check(self):
        yield from super().check()
        table = self.p["connection_table"]
        if table and len(table) != self.p["num_output"]:
            yield (("convolution_param", "connection_table"), "'connection_table' needs one row per output map",
                   f"{self.p['num_output']} rows", str(len(table)))
        if table and self.p["group"] != 1:
            yield (("convolution_param", "connection_table"), "'connection_table' cannot be combined with 'group'",
                   None, None)

    def infer(self, shapes):
        self._channels(shapes)
        geometry = self.geometry(self.spatial_axes(shapes))
        table = self.p["connection_table"]
        if table:
            channels = shapes[0][1]
            bad = [c for row in table for c in row if not 0 <= c < channels]
            if bad:
                raise ShapeError("'connection_table' names an input map that does not exist",
                                 expected=f"map indices 0..{channels - 1}", found=str(bad[0]),
                                 path=("convolution_param", "connection_table"))
        return [(shape[0], self.p["num_output"], *conv_output_sizes(shape[2:], *geometry)) for shape in shapes]

    def weight_count(self, weight):
        # Stored dense (a table excludes groups); only the table's connections are learnt, the rest is masked to zero.
        table = self.p["connection_table"]
        return sum(len(row) for row in table) * numel(weight[2:]) if table else None

    def _weights_of_all_outputs(self, shapes):
        """Weights feeding one position of every output map together (arithmetic, not a list per map:
        a fuzzed num_output of 10**20 must not allocate)."""
        kernel, *_ = self.geometry(self.spatial_axes(shapes))
        table = self.p["connection_table"]
        if table:
            return sum(len(row) for row in table) * numel(kernel)
        return shapes[0][1] // self.p["group"] * numel(kernel) * self.p["num_output"]

    def macs(self, shapes, outs):
        weights = self._weights_of_all_outputs(shapes)
        return sum(out[0] * numel(out[2:]) * weights for out in outs)

    def connections(self, shapes, outs):
        bias = 1 if self.p["bias_term"] else 0
        weights = self._weights_of_all_outputs(shapes)
        return sum(out[0] * numel(out[2:]) * (weights + bias * out[1]) for out in outs)

    def build(self, shapes):
        import torch.nn as nn
        from .modules import MaskedConv2d
        spatial = self.spatial_axes(shapes)
        kernel, stride, pad, dilation = self.geometry(spatial)
        channels = shapes[0][1]
        if self.p["connection_table"]:
            module = _each_bottom(MaskedConv2d, len(shapes))(
                channels, self.p["num_output"], kernel, stride, pad, dilation, self.p["bias_term"],
                self.p["connection_table"])
            self._init(module, shapes)
            module.apply_mask()
            return module
        module = _each_bottom(nn.Conv3d if spatial == 3 else nn.Conv2d, len(shapes))(
            channels, self.p["num_output"], kernel, stride, pad, dilation, self.p["group"], self.p["bias_term"])
        return self._init(module, shapes)


@register
class Deconvolution(_ConvBase):
    """2-D or 3-D transposed convolution: out = stride*(in-1) + dilation*(k-1) + 1 - 2*pad per spatial axis."""
    summary = "2-D and 3-D transposed convolution (Caffe weight layout [C_in, num_output/group, k...])"

    def weight_shape(self, channels, kernel):
        return (channels, self.p["num_output"] // self.p["group"], *kernel)

    def infer(self, shapes):
        self._channels(shapes)
        geometry = self.geometry(self.spatial_axes(shapes))
        return [(shape[0], self.p["num_output"],
                 *(s * (size - 1) + d * (k - 1) + 1 - 2 * p for size, k, s, p, d in zip(shape[2:], *geometry)))
                for shape in shapes]

    def macs(self, shapes, outs):
        kernel, *_ = self.geometry(self.spatial_axes(shapes))
        return sum(numel(s) * self.p["num_output"] // self.p["group"] * numel(kernel) for s in shapes)

    def build(self, shapes):
        import torch.nn as nn
        spatial = self.spatial_axes(shapes)
        kernel, stride, pad, dilation = self.geometry(spatial)
        module = _each_bottom(nn.ConvTranspose3d if spatial == 3 else nn.ConvTranspose2d, len(shapes))(
            shapes[0][1], self.p["num_output"], kernel, stride, pad, 0, self.p["group"], self.p["bias_term"],
            dilation)
        return self._init(module, shapes)


def _each_bottom(module_class, count):
    """The module class for `count` bottoms: with several, one that convolves each with the same weights."""
    if count == 1:
        return module_class
    from .modules import EACH_BOTTOM
    return EACH_BOTTOM[module_class]


@register
class Pooling(Layer):
    """MAX, AVE or STOCHASTIC pooling; output size rounds up (Caffe), and the last window must start inside
    the image or its left padding. MAX may give a second top, the mask: each maximum's index in its input
    plane. STOCHASTIC (no padding) samples a cell by activation in TRAIN and averages weighted by
    activation in TEST."""
    summary = "MAX/AVE/STOCHASTIC pooling, Caffe's ceil rounding, global_pooling, MAX's mask top"
    blocks = {"pooling_param": {
        "pool": Enum(["MAX", "AVE", "STOCHASTIC"], "MAX", "pooling method"),
        "kernel_size": Int(None, "window size", minimum=1), "kernel_h": Int(None, "window height", minimum=1),
        "kernel_w": Int(None, "window width", minimum=1),
        "stride": Int(1, "stride", minimum=1), "stride_h": Int(None, "vertical stride", minimum=1),
        "stride_w": Int(None, "horizontal stride", minimum=1),
        "pad": Int(0, "padding", minimum=0), "pad_h": Int(None, "vertical padding", minimum=0),
        "pad_w": Int(None, "horizontal padding", minimum=0),
        "global_pooling": Bool(False, "pool the whole H x W plane"),
        "round_mode": Enum(["CEIL", "FLOOR"], "CEIL", "rounding of the output size"),
        "engine": Enum(["DEFAULT", "CAFFE", "CUDNN"], "DEFAULT", "accepted for Caffe compatibility"),
    }}
    tops = (1, 2)
    kind = "pool"
    drawn_fields = ("kernel_size", "stride", "pad", "kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w",
                    "global_pooling")
    drawn_always = ("kernel_size", "stride", "pad")

    def output_size_field(self):
        return _kernel_field(self.spec.raw, "pooling_param")

    def type_text(self):
        return f"{type(self).__name__} {self.p['pool']}"  # as Caffe's draw_net: (Pooling MAX)

    def _hw(self, name, default):
        p = self.p
        value = p.get(name if name != "kernel" else "kernel_size")
        h, w = p.get(f"{name}_h"), p.get(f"{name}_w")
        value = default if value is None else value
        return (h if h is not None else value, w if w is not None else value)

    def check(self):
        p = self.p
        padded = [name for name in ("pad", "pad_h", "pad_w") if p[name]]
        if p["pool"] == "STOCHASTIC" and padded:
            yield (("pooling_param", padded[0]), "padding is implemented only for MAX and AVE pooling (as in Caffe)",
                   "no padding with STOCHASTIC", f"{padded[0]} {p[padded[0]]}")
        if len(self.spec.tops) == 2 and p["pool"] != "MAX":
            yield (("top",), "only MAX pooling gives a second (mask) top", "1 top", f"2 tops with {p['pool']}")
        if not p["global_pooling"] and p["kernel_size"] is None and (p["kernel_h"] is None or p["kernel_w"] is None):
            yield (("pooling_param",), "missing window size",
                   "'kernel_size', both 'kernel_h' and 'kernel_w', or 'global_pooling: true'", None)
        if p["global_pooling"] and (p["kernel_size"] or p["pad"] or p["stride"] != 1):
            yield (("pooling_param", "global_pooling"), "global pooling takes no kernel_size, pad or stride", None, None)

    def geometry(self, shape):
        if self.p["global_pooling"]:
            return (shape[2], shape[3]), (1, 1), (0, 0)
        kernel, stride, pad = self._hw("kernel", None), self._hw("stride", 1), self._hw("pad", 0)
        if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
            raise ShapeError("pooling padding must be smaller than the window", expected=f"pad < {kernel[0]}",
                             found=f"pad {pad[0]}", path=("pooling_param", "pad"))
        return kernel, stride, pad

    def infer(self, shapes):
        shape = shapes[0]
        _spatial_input(shape, "Pooling")
        kernel, stride, pad = self.geometry(shape)
        ceil = self.p["round_mode"] == "CEIL"
        out = []
        for size, k, s, p in zip(shape[2:], kernel, stride, pad):
            span = size + 2 * p - k
            o = (math.ceil(span / s) if ceil else span // s) + 1
            if p and (o - 1) * s >= size + p:
                o -= 1
            if (o - 1) * s - p >= size:
                # Caffe clamps only with padding, and fills such a window with -FLT_MAX (MAX) or NaN (AVE).
                raise ShapeError("the last pooling window would lie wholly outside the input", path=("pooling_param",),
                                 expected="a kernel at least as large as the stride, padding, or round_mode FLOOR",
                                 found=f"kernel {k}, stride {s} over size {size}")
            out.append(o)
        return [(shape[0], shape[1], out[0], out[1])] * len(self.spec.tops)  # the mask top has the output's shape

    def connections(self, shapes, outs):
        kernel, *_ = self.geometry(shapes[0])
        return numel(outs[0]) * kernel[0] * kernel[1]

    def build(self, shapes):
        import torch.nn as nn
        kernel, stride, pad = self.geometry(shapes[0])
        ceil = self.p["round_mode"] == "CEIL"
        if self.p["pool"] == "STOCHASTIC" or len(self.spec.tops) == 2:
            from .caffe_modules import MaxPoolWithMask, StochasticPool2d
            out_size = self.infer(shapes)[0][2:]
            if self.p["pool"] == "STOCHASTIC":
                return StochasticPool2d(kernel, stride, out_size)
            return MaxPoolWithMask(kernel, stride, pad, out_size)
        if pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
            from .modules import PaddedPool2d
            return PaddedPool2d(self.p["pool"], kernel, stride, pad, self.infer(shapes)[0][2:])
        if self.p["pool"] == "MAX":
            return nn.MaxPool2d(kernel, stride, pad, ceil_mode=ceil)
        return nn.AvgPool2d(kernel, stride, pad, ceil_mode=ceil, count_include_pad=True)


@register
class LRN(Layer):
    """Local response normalisation: x / (k + alpha/n * sum of squares)^beta, across channels or within."""
    summary = "local response normalisation (ACROSS_CHANNELS, WITHIN_CHANNEL)"
    blocks = {"lrn_param": {
        "local_size": Int(5, "window size (odd)", minimum=1),
        "alpha": Float(1.0, "scale"), "beta": Float(0.75, "exponent"),
        "norm_region": Enum(["ACROSS_CHANNELS", "WITHIN_CHANNEL"], "ACROSS_CHANNELS", "where the window lies"),
        "k": Float(1.0, "additive constant (ACROSS_CHANNELS)"),
        "engine": Enum(["DEFAULT", "CAFFE", "CUDNN"], "DEFAULT", "accepted for Caffe compatibility"),
    }}
    kind = "norm"
    drawn_fields = ("local_size", "alpha", "beta")

    def check(self):
        if self.p["local_size"] % 2 == 0:
            yield (("lrn_param", "local_size"), "'local_size' must be odd", "an odd number", str(self.p["local_size"]))

    def infer(self, shapes):
        _spatial_input(shapes[0], "LRN")
        return [tuple(shapes[0])]

    def macs(self, shapes, outs):
        return None  # squares, a sum over the window and a power per element: not counted

    def build(self, shapes):
        import torch.nn as nn
        from .modules import WithinChannelLRN
        p = self.p
        if p["norm_region"] == "ACROSS_CHANNELS":
            return nn.LocalResponseNorm(p["local_size"], p["alpha"], p["beta"], p["k"])
        return WithinChannelLRN(p["local_size"], p["alpha"], p["beta"])
