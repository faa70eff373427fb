"""Stage 4, graph: the expanded layers of one net state (phase, level, stages) wired into a DAG.

Follows Caffe's Net::Init: layers run in file order; a bottom must be a top of an earlier layer; a top
name may be produced once, except by an in-place layer (top equal to its bottom, as ReLU); tops that
nothing consumes are the net's outputs (in alphabetical order, as Caffe numbers them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import NetdefError, Problem, count, did_you_mean
from ..fields import apply_defaults, as_list
from ..layers import LAYERS
from ..layers.base import DATA, LOSS
from .load import Origin
from .schema import PARAM_SPEC_FIELDS, RULE_FIELDS

if TYPE_CHECKING:  # expand reads shapes through this module while it expands: no import back
    from .expand import ExpandedNet


@dataclass(frozen=True)
class NetState:
    phase: str = "TRAIN"
    level: int = 0
    stages: tuple = ()


@dataclass
class LayerSpec:
    """One layer of a phase, with every Caffe default filled in."""
    name: str
    type: str
    bottoms: list
    tops: list
    params: dict  # parameter block key -> block with defaults
    param_specs: list  # the `param:` entries given, defaulted (param_spec(i) defaults the others)
    loss_weights: list  # one per top
    propagate_down: list
    origin: Origin
    raw: dict
    impl: object = None

    @property
    def base_dir(self) -> Path:
        """Relative paths in a layer (data sources) are relative to the file the layer was written in."""
        return Path(self.origin.source.file).parent

    def param_spec(self, index: int) -> dict:
        """The defaulted `param:` entry of Caffe blob `index` (lr_mult, decay_mult, name, share_mode)."""
        return self.param_specs[index] if index < len(self.param_specs) else dict(DEFAULT_PARAM_SPEC)

    def problem(self, message, rel=(), key=False, **kw) -> Problem:
        return Problem(message, self.origin.pos(rel, key=key), layer=self.name, layer_type=self.type,
                       via=self.origin.via, **kw)


DEFAULT_PARAM_SPEC = apply_defaults(PARAM_SPEC_FIELDS, {})


@dataclass
class Graph:
    name: str
    state: NetState
    layers: list  # LayerSpec in execution (file) order
    inputs: list = field(default_factory=list)  # tops of source layers (data, Input)
    outputs: list = field(default_factory=list)  # tops never consumed, alphabetical
    notes: list = field(default_factory=list)  # what netdef changed of Caffe's tolerances (renamed layers)

    def layer(self, name) -> LayerSpec:
        return next(spec for spec in self.layers if spec.name == name)


def _rule_matches(rule, state: NetState) -> bool:
    rule = apply_defaults(RULE_FIELDS, rule)
    return ((rule["phase"] is None or rule["phase"] == state.phase)
            and (rule["min_level"] is None or state.level >= rule["min_level"])
            and (rule["max_level"] is None or state.level <= rule["max_level"])
            and all(s in state.stages for s in rule["stage"])
            and not any(s in state.stages for s in rule["not_stage"]))


def included(raw: dict, state: NetState) -> bool:
    """Caffe's FilterNet: include rules admit if any matches; else excluded if any exclude rule matches."""
    if raw.get("include"):
        return any(_rule_matches(r, state) for r in as_list(raw["include"]))
    return not any(_rule_matches(r, state) for r in as_list(raw.get("exclude")))


def _make_spec(raw: dict, origin: Origin, problems: list) -> LayerSpec:
    cls = LAYERS[raw["type"]]
    params = {key: apply_defaults(fields, raw.get(key) or {}) for key, fields in cls.blocks.items()}
    bottoms, tops = as_list(raw.get("bottom")), as_list(raw.get("top")) or _anonymous_tops(raw, cls)
    spec = LayerSpec(raw["name"], raw["type"], bottoms, tops, params, [], [], [], origin, raw)
    spec.param_specs = [apply_defaults(PARAM_SPEC_FIELDS, given) for given in raw.get("param") or []]
    weights = raw.get("loss_weight")
    if weights is None:
        spec.loss_weights = [1.0 if (cls.role == LOSS and i == 0) else 0.0 for i in range(len(tops))]
    else:
        spec.loss_weights = [float(w) for w in as_list(weights)]
        if len(spec.loss_weights) != len(tops):
            problems.append(spec.problem("one 'loss_weight' per top is needed", ("loss_weight",),
                                         expected=count(len(tops), "value"), found=str(len(spec.loss_weights))))
    spec.propagate_down = [bool(v) for v in as_list(raw.get("propagate_down"))] or [True] * len(bottoms)
    if len(spec.propagate_down) != len(bottoms):
        problems.append(spec.problem("one 'propagate_down' per bottom is needed", ("propagate_down",),
                                     expected=count(len(bottoms), "value"), found=str(len(spec.propagate_down))))
    if raw.get("include") and raw.get("exclude"):
        problems.append(spec.problem("a layer takes 'include' or 'exclude' rules, not both (as in Caffe)",
                                     ("exclude",), key=True))
    spec.impl = cls(spec)
    _check_arity(spec, cls, problems)
    blobs = spec.impl.param_names()  # as Caffe: at most one entry per blob this layer has
    if len(spec.param_specs) > len(blobs):
        problems.append(spec.problem("too many 'param' entries", ("param",),
                                     expected=f"at most {len(blobs)} ({', '.join(blobs) or 'no blobs'})",
                                     found=str(len(spec.param_specs))))
    for rel, message, expected, found in spec.impl.check():
        problems.append(spec.problem(message, rel, expected=expected, found=found))
    return spec


def _check_arity(spec: LayerSpec, cls, problems):
    for what, names, (low, high) in (("bottom", spec.bottoms, cls.bottoms), ("top", spec.tops, cls.tops)):
        if len(names) < low or (high is not None and len(names) > high):
            expected = count(low, what) if low == high else \
                (f"at least {count(low, what)}" if high is None else f"{low} to {high} {what}s")
            problems.append(spec.problem(f"wrong number of {what}s", (what,), expected=expected,
                                         found=str(len(names))))


def build_graph(net: ExpandedNet, state: NetState = NetState(), complete: bool = True) -> Graph:
    """Filter the expanded net for `state` and wire it; raises NetdefError with every wiring problem.
    `complete=False`: the layers are only the first part of a net (expansion reading shapes), whose
    unread tops later layers may still read."""
    problems: list = []
    specs, seen_names, notes = [], {}, []
    for raw, origin in zip(net.layers, net.origins):
        if not included(raw, state):
            continue
        spec = _make_spec(raw, origin, problems)
        if spec.name in seen_names:
            _second_name(spec, seen_names, state, problems, notes)
        seen_names[spec.name] = spec.origin.pos()
        specs.append(spec)
    graph = Graph(net.name, state, specs, notes=notes)
    _wire(graph, problems, complete)
    if problems:
        raise NetdefError(problems)
    return graph


def _second_name(spec: LayerSpec, seen_names: dict, state: NetState, problems: list, notes: list):
    """A layer name used twice in one phase. Caffe allows it (mnist_autoencoder has two `loss` layers); netdef
    needs unique names, so a layer without blobs is renamed <name>_2 (noted). Layers with blobs are refused:
    weights are matched by layer name, and Caffe would give both the same .caffemodel blobs."""
    first = seen_names[spec.name]
    where = f"line {first.line}" if first.file == spec.origin.source.file else str(first)
    if spec.impl.param_names():
        problems.append(spec.problem(f"layer name '{spec.name}' is used twice in phase {state.phase} "
                                     f"(first at {where})", ("name",)))
        return
    renamed = next(f"{spec.name}_{n}" for n in range(2, len(seen_names) + 3) if f"{spec.name}_{n}" not in seen_names)
    notes.append(f"{spec.origin.pos(('name',))}: layer name '{spec.name}' is used twice in phase {state.phase} "
                 f"(first at {where}), as Caffe allows; netdef names this one '{renamed}'")
    spec.name = renamed


def _anonymous_tops(raw: dict, cls) -> list:
    """Caffe gives a loss layer written without a top an anonymous one (AutoTopBlobs); netdef names it after
    the layer."""
    return [raw["name"]] if cls.role == LOSS and cls.tops[0] >= 1 else []


def _later_producer(graph: Graph, index: int, blob):
    return next((spec.name for spec in graph.layers[index + 1:] if blob in spec.tops), None)


def _wire(graph: Graph, problems: list, complete: bool = True):
    available = {}  # blob -> producing layer, for blobs not yet consumed
    produced = {}  # blob -> first producer
    has_loss = any(any(spec.loss_weights) for spec in graph.layers)
    for index, spec in enumerate(graph.layers):
        missing = set()
        for j, bottom in enumerate(spec.bottoms):
            if bottom not in produced:
                missing.add(bottom)
                later = _later_producer(graph, index, bottom)
                if later is not None:
                    problems.append(spec.problem(f"bottom '{bottom}' is produced only by a later layer "
                                                 f"'{later}' (layers run in file order; a cycle?)", ("bottom", j)))
                else:
                    problems.append(spec.problem(f"unknown bottom blob '{bottom}'", ("bottom", j),
                                                 hint=did_you_mean(bottom, produced)))
                continue
            available.pop(bottom, None)
        for j, top in enumerate(spec.tops):
            if top in missing:
                continue  # an in-place layer on a missing blob does not create it
            if top in produced and top not in spec.bottoms:
                problems.append(spec.problem(f"top '{top}' is already produced by layer '{produced[top]}' "
                                             "(only an in-place layer, with top equal to bottom, may reuse it)",
                                             ("top", j)))
                continue
            produced.setdefault(top, spec.name)
            available[top] = spec
        if spec.impl.role == DATA:
            graph.inputs += [t for t in spec.tops if t not in graph.inputs]
    graph.outputs = sorted(available)
    # After another problem (a misspelt bottom, an extra top) some tops only look unused: report the cause alone.
    if has_loss and complete and not problems:
        for blob, spec in sorted(available.items()):
            j = spec.tops.index(blob)
            if not spec.loss_weights[j] and not spec.impl.tops_may_be_unread():
                problems.append(spec.problem(f"top '{blob}' is never used and is not a loss", ("top",),
                                             hint="feed it to a layer, give it a loss_weight, or remove the layer"))
