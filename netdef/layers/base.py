"""The layer contract and the registry: one class per Caffe layer type, registered by its type name.

A layer class is the only place that knows its type. Every other stage (infer, build, the summary,
`netdef time`, export, the drawing, the schema and the README tables) reads what it declares:

- what it is: `role` (DATA: a source of net inputs, not part of the compiled module; LOSS: its first
  top carries loss_weight 1 unless the net says otherwise; METRIC: a reported figure, as Accuracy;
  PLAIN: everything else). Losses, metrics and data layers may leave their tops unread; a plain layer
  may too when `net_output` says that its tops are meant as net outputs (Softmax's `prob`, ArgMax).
  A deploy net (ONNX export) keeps the data layers it needs and the plain layers, and drops losses and
  metrics; `exportable` says whether a plain layer's module exports to ONNX. `netdef time` times every
  layer of the compiled module (every role but DATA). `kind` is only the drawing's colour family.
- its fields: `blocks` (Caffe parameter key -> {field: Field}), `bottoms` and `tops` (min, max);
- which bottoms are class labels and how many classes they index: `label_classes(shapes)`;
- its blobs: `param_names()` names them in Caffe's blob order from its fields and bottoms alone (the
  graph checks the number of `param:` entries against it before shapes are known), and `blob_specs(shapes)`
  gives them as ONE list of BlobSpec in that order (module attribute, shape, filler, the `param:` entry
  that governs it, whether it is learnt, how many values are learnt), made with `blob_list` so that the
  two cannot disagree. Infer counts parameters and checks shared ones from it, build applies
  lr_mult/decay_mult/sharing from it, the builders fill from it;
- its shape rule `infer(shapes)` and cost: `macs(shapes, outs)` and `connections(shapes, outs)` for
  the whole batch, or None for "not counted" (a cost netdef does not model; shown as such, never as 0).
  The per-sample figures are these divided by the batch of the layer's first bottom (its first axis;
  1 for a layer without bottoms or with a scalar one): infer does the division, once, for every layer;
- what a drawing shows: `drawn_fields`, `drawn_always`, `type_text()` and `key_parameters()`;
- its PyTorch module: `build(shapes)`, importing torch lazily (modules.py), so that `netdef check` and
  `netdef summary` never import torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from ..errors import ShapeError  # noqa: F401  (layers raise it from their shape rules)

LAYERS: dict = {}

DATA, LOSS, METRIC, PLAIN = "data", "loss", "metric", "plain"
ROLES = (DATA, LOSS, METRIC, PLAIN)
KINDS = ("data", "conv", "pool", "ip", "neuron", "norm", "loss", "metric", "other")  # drawing colours


def register(cls):
    """Class decorator: files a layer class under its Caffe type name (the class name)."""
    name = cls.__name__
    if name in LAYERS:
        raise RuntimeError(f"layer type {name} registered twice")
    if cls.role not in ROLES or cls.kind not in KINDS:
        raise RuntimeError(f"layer type {name}: role {cls.role!r} or kind {cls.kind!r} is not one of {ROLES}, {KINDS}")
    LAYERS[name] = cls
    return cls


def numel(shape) -> int:
    return math.prod(shape)


@dataclass(frozen=True)
class BlobSpec:
    """One blob a layer stores, as its built module holds it.

    name: the module attribute (`weight`, `bias`, `mean`); shape: as stored; filler: the defaulted filler
    block the builder fills it with (None: set otherwise, e.g. RBF centres written in the net or
    BatchNorm's zeroed statistics); param_index: which `param:` entry (lr_mult, decay_mult, name) governs
    it, Caffe's blob index for this layer's fields and bottoms (a Scale whose scale is its second bottom
    has only a bias: blob 0); learnable: learnt by the solver (BatchNorm's statistics are stored, not
    learnt); count: learnable values, less than the size when part of it is fixed (a connection_table
    weight counts only its connections); default: the size when learnable, else 0."""
    name: str
    shape: tuple
    filler: dict | None = None
    param_index: int = 0
    learnable: bool = True
    count: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(self.shape))
        if self.count is None:
            object.__setattr__(self, "count", numel(self.shape) if self.learnable else 0)


def weight_and_bias(bias_term) -> tuple:
    """The usual blob names: a weight, and a bias with bias_term."""
    return ("weight", "bias") if bias_term else ("weight",)


# Labels of fields on a drawing (`out 20 k5 s1 p0`); a one-letter label is written against the value.
FIELD_LABELS = {"num_output": "out", "kernel_size": "k", "stride": "s", "pad": "p"}


def _value_text(value) -> str:
    if isinstance(value, list):
        return "x".join(_value_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


class Layer:
    """Base of every layer type. Subclasses override the class attributes and the methods they need."""

    blocks: ClassVar[dict] = {}  # Caffe parameter key (e.g. "convolution_param") -> {field: Field}
    bottoms: ClassVar[tuple] = (1, 1)  # (min, max); max None = any number
    tops: ClassVar[tuple] = (1, 1)
    role: ClassVar[str] = PLAIN  # DATA, LOSS, METRIC or PLAIN (see the module docstring)
    net_output: ClassVar[bool] = False  # a plain layer whose tops are meant as net outputs (may be unread)
    exportable: ClassVar[bool] = True  # its module exports to ONNX (a deploy net holds only plain layers)
    kind: ClassVar[str] = "other"  # drawing colour only: data, conv, pool, ip, neuron, norm, loss, metric, other
    drawn_fields: ClassVar[tuple] = ()  # fields a drawing shows (in this order) when the file sets them
    drawn_always: ClassVar[tuple] = ()  # of those, the ones shown at their default too (first block only)
    summary: ClassVar[str] = ""  # one line for the README's layer table
    # {block: {field: value}} where Caffe's own default differs from netdef's: a layer read from Caffe's text
    # format (netdef/caffe) that leaves the field out gets Caffe's value, as Caffe would read it.
    caffe_defaults: ClassVar[dict] = {}

    def __init__(self, spec):
        self.spec = spec
        self.params = spec.params
        self.name = spec.name

    @property
    def p(self) -> dict:
        """The first (main) parameter block."""
        return self.params[next(iter(self.blocks))] if self.blocks else {}

    # ---- what it is ----
    @classmethod
    def tops_may_be_unread(cls) -> bool:
        """Whether a top nothing reads is fine (a net output) rather than a wiring mistake."""
        return cls.role != PLAIN or cls.net_output

    @classmethod
    def deployed(cls) -> bool:
        """Whether a deploy net (ONNX export) keeps it: data layers (those it needs) and plain layers."""
        return cls.role in (DATA, PLAIN)

    @classmethod
    def compiled(cls) -> bool:
        """Whether it is part of the compiled module (and so timed by `netdef time`); data layers feed it."""
        return cls.role != DATA

    def output_size_field(self) -> tuple:
        """Where an empty output is pointed at: the field that sizes the output (a kernel), else the tops."""
        return ("top",)

    # ---- validation before shapes ----
    def check(self):
        """Cross-field rules; yields (path inside the layer, message, expected, found)."""
        return ()

    # ---- inference ----
    def infer(self, shapes: list) -> list:
        """Output shapes (with batch) from input shapes. Default: shape-preserving, one top per bottom."""
        return [tuple(s) for s in shapes]

    def param_names(self) -> tuple:
        """The names of its blobs in Caffe's blob order (the order of `param:` entries), from its fields and
        number of bottoms alone."""
        return ()

    def blob_specs(self, shapes: list) -> list:
        """Every blob the layer stores (learnt or not), as BlobSpec in param_names() order (the order the
        builder fills them in); layers with blobs return `self.blob_list(...)`."""
        return []

    def blob_list(self, **candidates) -> list:
        """The BlobSpecs of the blobs param_names() lists, param_index their position there; each candidate
        is name=(shape, filler) or name=(shape, filler, {"learnable": ..., "count": ...})."""
        return [BlobSpec(name, candidates[name][0], candidates[name][1], index,
                         **(candidates[name][2] if len(candidates[name]) > 2 else {}))
                for index, name in enumerate(self.param_names())]

    def label_classes(self, shapes: list) -> dict:
        """{bottom index: number of classes} for the bottoms read as class labels (valid: 0 .. n - 1)."""
        return {}

    def macs(self, shapes: list, outs: list) -> int | None:
        """Multiply-accumulates for the whole batch; None: not counted (a cost netdef does not model)."""
        return 0

    def connections(self, shapes: list, outs: list) -> int | None:
        """LeCun's count for the whole batch: each output element's inputs, plus one for its bias."""
        macs = self.macs(shapes, outs)
        if macs is None:
            return None
        bias = numel(outs[0]) if any(b.name == "bias" for b in self.blob_specs(shapes)) else 0
        return macs + bias

    # ---- drawing ----
    def type_text(self) -> str:
        """The type as a drawing titles it (Pooling adds its method: `Pooling MAX`)."""
        return type(self).__name__

    def key_parameters(self) -> str:
        """The fields that say what the layer does, compactly (`out 20 k5 s1`): `drawn_always` fields of
        the first block even at their default, other `drawn_fields` when the file sets them."""
        parts = []
        for index, (block_key, block) in enumerate(self.params.items()):
            written = self.spec.raw.get(block_key) or {}
            always = self.drawn_always if index == 0 else ()  # defaults of secondary blocks say little
            for name in self.drawn_fields:
                value = block.get(name)
                if name not in block or value is None or value == [] or (name not in always and name not in written):
                    continue
                label = FIELD_LABELS.get(name, name)
                parts.append(f"{label}{_value_text(value)}" if len(label) == 1 else f"{label} {_value_text(value)}")
        return " ".join(parts)

    # ---- data sources (role DATA) ----
    def reader(self, phase: str, seed: int, device):
        """A batch server for a source layer: an object with `next() -> [tensor per top]`,
        `state_dict()` and `load_state_dict(state)` (its position, so that a resumed run continues
        with exactly the batches it would have seen). Sources fed by the caller (Input) have none."""
        raise NotImplementedError(f"{type(self).__name__} layers are fed by the caller")

    # ---- building ----
    def build(self, shapes: list):
        """A torch.nn.Module whose forward takes the bottoms in order and returns the top(s); its blobs
        are the attributes `blob_specs` names, filled from their fillers."""
        raise NotImplementedError(f"{type(self).__name__} cannot be compiled")
