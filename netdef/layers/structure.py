"""Layers that route, join or reshape blobs: Eltwise, Concat, Split, Slice, Flatten, Reshape."""
from __future__ import annotations

from ..fields import Bool, Block, Enum, Float, Int
from .base import Layer, ShapeError, numel, register
from .common import _axis


def _shape_list(shapes):
    return ", ".join(str(list(s)) for s in shapes)


@register
class Eltwise(Layer):
    """Elementwise SUM (with optional coefficients), PROD or MAX of bottoms of equal shape."""
    summary = "elementwise SUM (coeff), PROD, MAX"
    blocks = {"eltwise_param": {
        "operation": Enum(["PROD", "SUM", "MAX"], "SUM", "operation"),
        "coeff": Float(None, "SUM only: one coefficient per bottom", repeated=True),
        "stable_prod_grad": Bool(True, "accepted for Caffe compatibility"),
    }}
    bottoms = (2, None)
    drawn_fields = ("operation",)

    def check(self):
        coeff = self.p["coeff"]
        if coeff and self.p["operation"] != "SUM":
            yield (("eltwise_param", "coeff"), "'coeff' is only allowed with operation SUM", None, self.p["operation"])
        if coeff and len(coeff) != len(self.spec.bottoms):
            yield (("eltwise_param", "coeff"), "one 'coeff' per bottom is needed", f"{len(self.spec.bottoms)} values",
                   str(len(coeff)))

    def infer(self, shapes):
        first = tuple(shapes[0])
        for name, shape in zip(self.spec.bottoms[1:], shapes[1:]):
            if tuple(shape) != first:
                raise ShapeError(f"Eltwise bottoms must have equal shapes; '{name}' differs",
                                 expected=f"shape {list(first)} (as '{self.spec.bottoms[0]}')", found=f"shape {list(shape)}")
        return [first]

    def macs(self, shapes, outs):
        operation = self.p["operation"]
        if operation == "PROD":
            return numel(outs[0]) * (len(shapes) - 1)
        return numel(outs[0]) * len(shapes) if operation == "SUM" and self.p["coeff"] else 0

    def build(self, shapes):
        from .modules import Eltwise as Module
        return Module(self.p["operation"], self.p["coeff"] or [1.0] * len(shapes))


@register
class Concat(Layer):
    """Joins bottoms along `axis`; every other axis must agree."""
    summary = "concatenation along an axis"
    blocks = {"concat_param": {"axis": Int(1, "axis to join along"), "concat_dim": Int(None, "deprecated alias of axis")}}
    bottoms = (1, None)
    drawn_fields = ("axis",)

    def _axis(self, shape):
        axis = self.p["concat_dim"] if self.p["concat_dim"] is not None else self.p["axis"]
        return _axis(axis, shape, path=("concat_param", "axis"))

    def infer(self, shapes):
        axis = self._axis(shapes[0])
        out = list(shapes[0])
        for name, shape in zip(self.spec.bottoms[1:], shapes[1:]):
            if len(shape) != len(out) or any(a != b for i, (a, b) in enumerate(zip(shape, out)) if i != axis):
                raise ShapeError(f"Concat bottom '{name}' differs from '{self.spec.bottoms[0]}' off axis {axis}",
                                 expected=f"shape like {out} except axis {axis}", found=f"shape {list(shape)}")
            out[axis] += shape[axis]
        return [tuple(out)]

    def build(self, shapes):
        from .modules import Concat as Module
        return Module(self._axis(shapes[0]))


@register
class Split(Layer):
    """Copies its bottom to every top (Caffe inserts these itself; netdef needs none, but accepts them)."""
    summary = "copies a blob to several tops"
    tops = (1, None)

    def infer(self, shapes):
        return [tuple(shapes[0])] * len(self.spec.tops)

    def build(self, shapes):
        from .modules import Split as Module
        return Module(len(self.spec.tops))


@register
class Slice(Layer):
    """Cuts its bottom along `axis` at `slice_point`s (or into equal parts), one piece per top."""
    summary = "cuts a blob along an axis"
    blocks = {"slice_param": {"axis": Int(1, "axis to cut"),
                              "slice_point": Int(None, "cut positions, strictly increasing", repeated=True, minimum=1),
                              "slice_dim": Int(None, "deprecated alias of axis")}}
    tops = (1, None)
    drawn_fields = ("axis", "slice_point")

    def check(self):
        points = self.p["slice_point"]
        if points and len(points) != len(self.spec.tops) - 1:
            yield (("slice_param", "slice_point"), "one 'slice_point' fewer than tops is needed",
                   f"{len(self.spec.tops) - 1} values", str(len(points)))
        if any(b <= a for a, b in zip(points, points[1:])):
            yield (("slice_param", "slice_point"), "'slice_point' must be strictly increasing", None, str(points))

    def sizes(self, shape):
        axis = self.p["slice_dim"] if self.p["slice_dim"] is not None else self.p["axis"]
        axis = _axis(axis, shape, path=("slice_param", "axis"))
        total, count, points = shape[axis], len(self.spec.tops), self.p["slice_point"]
        if points:
            if points[-1] >= total:
                raise ShapeError("a 'slice_point' lies outside the axis", expected=f"< {total}", found=str(points[-1]),
                                 path=("slice_param", "slice_point"))
            bounds = [0] + list(points) + [total]
            return axis, [b - a for a, b in zip(bounds, bounds[1:])]
        if total % count:
            raise ShapeError("the axis cannot be cut into equal parts", expected=f"a multiple of {count}",
                             found=str(total))
        return axis, [total // count] * count

    def infer(self, shapes):
        axis, sizes = self.sizes(shapes[0])
        return [tuple(shapes[0][:axis]) + (size,) + tuple(shapes[0][axis + 1:]) for size in sizes]

    def build(self, shapes):
        from .modules import Slice as Module
        return Module(*self.sizes(shapes[0]))


@register
class Flatten(Layer):
    """Merges axes axis..end_axis into one."""
    summary = "merges a range of axes"
    blocks = {"flatten_param": {"axis": Int(1, "first axis"), "end_axis": Int(-1, "last axis")}}
    drawn_fields = ("axis",)

    def _range(self, shape):
        start = _axis(self.p["axis"], shape, path=("flatten_param", "axis"))
        end = _axis(self.p["end_axis"], shape, path=("flatten_param", "end_axis"))
        return start, end

    def infer(self, shapes):
        shape = shapes[0]
        start, end = self._range(shape)
        return [tuple(shape[:start]) + (numel(shape[start:end + 1]),) + tuple(shape[end + 1:])]

    def build(self, shapes):
        from .modules import Flatten as Module
        return Module(*self._range(shapes[0]))


@register
class Reshape(Layer):
    """Caffe's Reshape: `dim` 0 copies the input's axis, -1 is inferred; axis/num_axes choose the span."""
    summary = "reshape (0 copies an axis, -1 infers one)"
    blocks = {"reshape_param": {"shape": Block({"dim": Int(None, "sizes", repeated=True, minimum=-1)}, "new shape",
                                               required=True),
                                "axis": Int(0, "first axis replaced"), "num_axes": Int(-1, "axes replaced (-1: to the end)",
                                                                                       minimum=-1)}}
    drawn_fields = ("axis",)

    def infer(self, shapes):
        shape, p = list(shapes[0]), self.p
        dims = list(p["shape"]["dim"])
        axis = p["axis"] if p["axis"] >= 0 else len(shape) + 1 + p["axis"]
        end = len(shape) if p["num_axes"] == -1 else axis + p["num_axes"]
        if not 0 <= axis <= end <= len(shape):
            raise ShapeError("'axis'/'num_axes' do not fit the input", found=f"shape {shape}", path=("reshape_param",))
        if dims.count(-1) > 1:
            raise ShapeError("at most one -1 may be given in 'dim'", found=str(dims), path=("reshape_param", "shape"))
        if any(d == 0 and axis + i >= len(shape) for i, d in enumerate(dims)):
            raise ShapeError("a 0 in 'dim' copies an input axis that does not exist", found=f"shape {shape}",
                             path=("reshape_param", "shape"))
        new = [shape[axis + i] if d == 0 else d for i, d in enumerate(dims)]
        out = shape[:axis] + new + shape[end:]
        if -1 in out:
            known = numel([d for d in out if d != -1])
            if numel(shape) % known:
                raise ShapeError("the input cannot be reshaped to 'dim'", expected=f"a size divisible by {known}",
                                 found=f"{numel(shape)} elements", path=("reshape_param", "shape"))
            out[out.index(-1)] = numel(shape) // known
        if numel(out) != numel(shape):
            raise ShapeError("'dim' does not keep the number of elements", expected=f"{numel(shape)} elements",
                             found=f"{numel(out)} (shape {out})", path=("reshape_param", "shape"))
        return [tuple(out)]

    def build(self, shapes):
        from .modules import Reshape as Module
        p = self.p
        axis = p["axis"] if p["axis"] >= 0 else len(shapes[0]) + 1 + p["axis"]
        keeps_batch = axis > 0 or (p["num_axes"] != 0 and p["shape"]["dim"][:1] == [0])
        return Module(self.infer(shapes)[0], keeps_batch)
