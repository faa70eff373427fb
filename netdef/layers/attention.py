"""Token layers: multi-head attention and the blob plumbing around it — MatMul, Permute (SSD's Caffe fork),
and Caffe's Parameter (a learnt blob as a top) and Tile. Tokens are batch first: N x L x E."""
from __future__ import annotations

from ..fields import Block, Bool, Float, Int
from .base import Layer, ShapeError, numel, register
from .common import _axis
from .fillers import FillerField, fill_blobs


@register
class MultiHeadAttention(Layer):
    """Multi-head attention (Vaswani et al. 2017) on N x L x E tokens, E from the bottom: query, and key
    and value bottoms (N x S x E) that default to the query (self-attention). Blobs as PyTorch's
    nn.MultiheadAttention and ViT store them: in_proj_weight (3E x E, rows q, k, v), in_proj_bias (3E),
    out_proj_weight (E x E), out_proj_bias (E); each head attends with its E / num_heads columns."""
    summary = "multi-head (self-)attention on N x L x E tokens (query, key, value bottoms)"
    blocks = {"multi_head_attention_param": {
        "num_heads": Int(None, "attention heads (a divisor of the embedding size)", required=True, minimum=1),
        "bias_term": Bool(True, "learn the projections' biases"),
        "dropout_ratio": Float(0.0, "dropout on the attention weights in TRAIN", minimum=0, maximum=1),
        "weight_filler": FillerField("projection weights' initialisation (default constant 0, as Caffe)"),
        "bias_filler": FillerField("projection biases' initialisation"),
    }}
    bottoms = (1, 3)
    kind = "ip"
    drawn_fields = ("num_heads", "dropout_ratio", "bias_term")
    drawn_always = ("num_heads",)

    def _embed(self, shapes) -> int:
        query = shapes[0]
        key = shapes[1] if len(shapes) > 1 else query
        value = shapes[2] if len(shapes) > 2 else key
        for name, shape in (("query", query), ("key", key), ("value", value)):
            if len(shape) != 3:
                raise ShapeError(f"the {name} must be N x L x E tokens", expected="3 axes", found=f"shape {list(shape)}")
        if key[2] != query[2] or value[2] != query[2] or key[0] != query[0] or tuple(value[:2]) != tuple(key[:2]):
            raise ShapeError("query, key and value do not fit", expected=f"N x S x {query[2]} keys and values, "
                             f"N = {query[0]}", found=", ".join(str(list(s)) for s in (query, key, value)))
        if query[2] % self.p["num_heads"]:
            raise ShapeError("the embedding cannot be split into 'num_heads' heads", expected=f"a divisor of {query[2]}",
                             found=str(self.p["num_heads"]), path=("multi_head_attention_param", "num_heads"))
        return query[2]

    def infer(self, shapes):
        self._embed(shapes)
        return [tuple(shapes[0])]

    def param_names(self):
        biased = self.p["bias_term"]
        return ("in_proj_weight",) + (("in_proj_bias",) if biased else ()) + ("out_proj_weight",) + \
            (("out_proj_bias",) if biased else ())

    def blob_specs(self, shapes):
        e, p = self._embed(shapes), self.p
        return self.blob_list(in_proj_weight=((3 * e, e), p["weight_filler"]), in_proj_bias=((3 * e,), p["bias_filler"]),
                              out_proj_weight=((e, e), p["weight_filler"]), out_proj_bias=((e,), p["bias_filler"]))

    def macs(self, shapes, outs):
        """Projections of L queries and S keys and values, q k^T and the weighted sum of values per head
        (L x S x E in all heads, each), and the output projection."""
        e = self._embed(shapes)
        n, length = shapes[0][:2]
        keys = shapes[1][1] if len(shapes) > 1 else length
        return n * (2 * length * e * e + 2 * keys * e * e + 2 * length * keys * e)

    def build(self, shapes):
        from .modern_modules import MultiHeadAttention as Module
        p = self.p
        module = Module(self._embed(shapes), p["num_heads"], p["bias_term"], p["dropout_ratio"])
        return fill_blobs(module, self.blob_specs(shapes))


@register
class MatMul(Layer):
    """Batched matrix product of two bottoms (..., M, K) x (..., K, N), leading axes broadcast as in numpy;
    transpose_a / transpose_b transpose a bottom's last two axes first."""
    summary = "batched matrix product (transpose flags, broadcast batch axes)"
    blocks = {"matmul_param": {"transpose_a": Bool(False, "use the first bottom's transpose"),
                               "transpose_b": Bool(False, "use the second bottom's transpose")}}
    bottoms = (2, 2)
    kind = "ip"
    drawn_fields = ("transpose_a", "transpose_b")

    def _matrices(self, shapes):
        a, b = (tuple(s) for s in shapes)
        if len(a) < 2 or len(b) < 2:
            raise ShapeError("MatMul needs matrices", expected="at least 2 axes each",
                             found=f"shapes {list(a)}, {list(b)}")
        (m, k), (k2, n) = (a[-1:-3:-1] if self.p["transpose_a"] else a[-2:]), \
            (b[-1:-3:-1] if self.p["transpose_b"] else b[-2:])
        if k != k2:
            raise ShapeError("the inner sizes of the product differ", expected=f"{k} rows in the second matrix",
                             found=str(k2))
        return m, k, n, _broadcast(a[:-2], b[:-2])

    def infer(self, shapes):
        m, _, n, batch = self._matrices(shapes)
        return [batch + (m, n)]

    def macs(self, shapes, outs):
        return numel(outs[0]) * self._matrices(shapes)[1]

    def build(self, shapes):
        from .modern_modules import MatMul as Module
        return Module(self.p["transpose_a"], self.p["transpose_b"])


def _broadcast(a: tuple, b: tuple) -> tuple:
    """numpy's broadcast of two batch shapes."""
    width = max(len(a), len(b))
    a, b = (1,) * (width - len(a)) + a, (1,) * (width - len(b)) + b
    if any(x != y and 1 not in (x, y) for x, y in zip(a, b)):
        raise ShapeError("the batch axes of the two bottoms do not broadcast", found=f"{list(a)} and {list(b)}")
    return tuple(max(x, y) for x, y in zip(a, b))


@register
class Permute(Layer):
    """Reorders axes (SSD's Caffe fork): top axis i is bottom axis order[i]; axes not listed follow in order."""
    summary = "reorders axes (SSD's Caffe fork)"
    blocks = {"permute_param": {"order": Int(None, "the new order of the axes (the first ones; the rest keep theirs)",
                                             repeated=True, minimum=0)}}
    drawn_fields = ("order",)
    drawn_always = ("order",)

    def check(self):
        order = self.p["order"]
        if len(set(order)) != len(order):
            yield (("permute_param", "order"), "'order' names an axis twice", "distinct axes", str(order))

    def order(self, shape) -> tuple:
        given = tuple(self.p["order"])
        if any(axis >= len(shape) for axis in given):
            raise ShapeError("'order' names an axis the bottom does not have", expected=f"axes < {len(shape)}",
                             found=str(list(given)), path=("permute_param", "order"))
        return given + tuple(axis for axis in range(len(shape)) if axis not in given)

    def infer(self, shapes):
        return [tuple(shapes[0][axis] for axis in self.order(shapes[0]))]

    def build(self, shapes):
        from .modern_modules import Permute as Module
        return Module(self.order(shapes[0]))


@register
class Parameter(Layer):
    """Caffe's Parameter: a learnt blob of the given shape as its top (a class token, a position embedding),
    with no bottom. Caffe starts it at 0; `filler` (netdef) initialises it otherwise."""
    summary = "a learnt blob as a top"
    blocks = {"parameter_param": {
        "shape": Block({"dim": Int(None, "sizes", repeated=True, minimum=1)}, "the blob's shape", required=True),
        "filler": FillerField("initialisation (netdef; Caffe: constant 0)"),
    }}
    bottoms = (0, 0)
    drawn_fields = ("shape",)

    def check(self):
        if not self.p["shape"]["dim"]:
            yield (("parameter_param", "shape"), "Parameter needs a shape", "shape: {dim: [...]}", None)

    def _shape(self):
        return tuple(self.p["shape"]["dim"])

    def infer(self, shapes):
        return [self._shape()]

    def param_names(self):
        return ("weight",)

    def blob_specs(self, shapes):
        return self.blob_list(weight=(self._shape(), self.p["filler"]))

    def key_parameters(self):
        return "x".join(map(str, self._shape()))

    def build(self, shapes):
        from .modern_modules import Parameter as Module
        return fill_blobs(Module(self._shape()), self.blob_specs(shapes))


@register
class Tile(Layer):
    """Caffe's Tile: `tiles` copies of the bottom concatenated along `axis`."""
    summary = "repeats a blob along an axis"
    blocks = {"tile_param": {"axis": Int(1, "axis to repeat along"),
                             "tiles": Int(None, "number of copies", required=True, minimum=1)}}
    drawn_fields = ("axis", "tiles")
    drawn_always = ("tiles",)

    def infer(self, shapes):
        axis = _axis(self.p["axis"], shapes[0], path=("tile_param", "axis"))
        shape = list(shapes[0])
        shape[axis] *= self.p["tiles"]
        return [tuple(shape)]

    def build(self, shapes):
        from .modern_modules import Tile as Module
        return Module(_axis(self.p["axis"], shapes[0]), self.p["tiles"])
