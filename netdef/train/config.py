"""Solver files: Caffe's SolverParameter names, validated by the same schema machinery as nets and read
into a frozen SolverConfig.

    config = load_solver("solvers/lenet_solver.yaml")
    config.base_lr, config.lr_policy, config.max_iter      # every field typed, with its default
    config = config.replace(device="cpu")                   # a changed copy, checked again

The fields are stated once, in SOLVER_FIELDS: the JSON Schema, the defaults, the README's table and the
SolverConfig class are generated from it. The choices of `lr_policy` and `type` are the registries that
implement them (lr_policy.LR_POLICIES, updates.UPDATE_RULES), and so are the rules tying a policy or a rule
to other fields ("step needs gamma and stepsize", "Adam needs momentum < 1").
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from types import MappingProxyType

from ..errors import NetdefError, Problem
from ..fields import Block, Bool, Enum, Float, Int, Str, apply_defaults, as_list
from ..front.load import Origin, Source, load_yaml
from ..paths import caffe_rooted, exists
from .lr_policy import LR_POLICIES, policy_problems
from .updates import UPDATE_RULES, rule_problems

SOLVER_TYPES = tuple(UPDATE_RULES)
# Caffe's SolverParameter.SolverType enum (before `type` was a string), in capitals.
LEGACY_SOLVER_TYPES = {name.upper(): name for name in SOLVER_TYPES}
NET_STATE_FIELDS = {
    "phase": Enum(["TRAIN", "TEST"], None, "the phase (a solver sets it: TRAIN or TEST by the net's use)"),
    "level": Int(0, "the net state's level"),
    "stage": Str(None, "the net state's stages", repeated=True),
}
# Caffe's inline nets, the net-file field each stands in for; the loader reads one as FILE#FIELD.
INLINE_NET_FIELDS = {"net_param": "net", "train_net_param": "train_net", "test_net_param": "test_net"}

SOLVER_FIELDS = {
    "net": Str(None, "net file holding TRAIN and TEST layers (relative to the solver file)"),
    "train_net": Str(None, "net file for training only"),
    "test_net": Str(None, "net file(s) for testing only", repeated=True),
    "test_iter": Int(None, "batches per test pass (one per test net)", repeated=True, minimum=1),
    "test_interval": Int(0, "test every this many iterations (0: never)", minimum=0),
    "test_initialization": Bool(True, "also test before the first iteration"),
    "base_lr": Float(None, "base learning rate", required=True, minimum=0),
    "lr_policy": Enum(list(LR_POLICIES), "fixed", "learning-rate schedule"),
    "gamma": Float(None, "step/exp/inv/multistep/sigmoid factor"),
    "power": Float(None, "inv/poly exponent"),
    "stepsize": Int(None, "step: iterations per decay; sigmoid: midpoint", minimum=1),
    "stepvalue": Int(None, "multistep: iterations at which lr is multiplied by gamma", repeated=True, minimum=1),
    "momentum": Float(0.0, "SGD/Nesterov momentum, AdaDelta decay, Adam beta1", minimum=0),
    "momentum2": Float(0.999, "Adam beta2", minimum=0),
    "delta": Float(1e-8, "AdaGrad/RMSProp/AdaDelta/Adam epsilon", minimum=0),
    "rms_decay": Float(0.99, "RMSProp decay", minimum=0),
    "weight_decay": Float(0.0, "regularisation strength (times each blob's decay_mult)", minimum=0),
    "regularization_type": Enum(["L2", "L1"], "L2", "regularisation"),
    "type": Enum(list(SOLVER_TYPES), "SGD", "update rule"),
    "clip_gradients": Float(-1.0, "if >= 0, scale gradients so that their global L2 norm is at most this"),
    "iter_size": Int(1, "accumulate gradients over this many batches per update", minimum=1),
    "nan_policy": Enum(["stop", "skip", "ignore"], "stop",
                       "a loss that is not finite: stop the run (naming the layer, no snapshot of those weights), "
                       "skip that update, or ignore it (netdef)"),
    "average_loss": Int(1, "displayed loss: mean over this many iterations", minimum=1),
    "display": Int(0, "log every this many iterations (0: never)", minimum=0),
    "max_iter": Int(None, "number of updates", required=True, minimum=0),
    "snapshot": Int(0, "snapshot every this many iterations (0: only at the end)", minimum=0),
    "snapshot_prefix": Str(None, "snapshot path prefix (relative to the solver file); files are "
                                 "<prefix>_iter_<N>.pt"),
    "snapshot_after_train": Bool(True, "snapshot after the last iteration"),
    "snapshot_error_policy": Enum(["stop", "continue"], "stop",
                                  "a snapshot that cannot be written (disk full, I/O error): stop the run, or log "
                                  "it and train on; the closing snapshot always stops (netdef)"),
    "random_seed": Int(-1, "seed for weights, data order and dropout (< 0: from the clock)"),
    "device": Str("auto", "auto, cpu, cuda or cuda:N (netdef)"),
    "precision": Enum(["fp32", "bf16", "fp16"], "fp32", "autocast precision of forward passes (netdef)"),
    "sync_bn": Bool(False, "with several processes: BatchNorm's batch statistics over the batches of all ranks, "
                           "as one process at the whole batch would compute them (torch's SyncBatchNorm)"),
    "compile": Bool(False, "run the training passes through torch.compile; a net that cannot compile trains "
                           "eagerly, with a note in the log (netdef)"),
    "log_dir": Str(None, "the folder of this solver's numbered run folders, <log_dir>/<N>/, each holding the "
                         "resolved solver and nets, train.log and the TensorBoard events; relative to the solver "
                         "file (netdef; default runs/<solver file stem>/<N>/ in the current folder)"),
    "solver_mode": Enum(["CPU", "GPU"], None, "Caffe's device choice: CPU is device cpu, GPU the GPU (cuda:device_id; "
                                            "the CPU where there is none); an explicit device wins"),
    "device_id": Int(0, "Caffe's GPU number, with solver_mode GPU", minimum=0),
    "solver_type": Enum(list(LEGACY_SOLVER_TYPES), None, "Caffe's legacy enum of type (SGD, NESTEROV, ADAGRAD, ...)"),
    "train_state": Block(NET_STATE_FIELDS, "the TRAIN net's state (level, stage; --level/--stage override it)"),
    "test_state": Block(NET_STATE_FIELDS, "one state per test net (level, stage)", list_of=True),
    "test_compute_loss": Bool(False, "accepted for Caffe compatibility: netdef's tests always report every "
                                     "TEST output, losses included"),
    "snapshot_format": Enum(["BINARYPROTO", "HDF5"], "BINARYPROTO",
                            "accepted for Caffe compatibility: netdef writes its own .pt snapshots in either case "
                            "(they also hold the data readers' and random generators' states)"),
    "snapshot_diff": Bool(False, "Caffe's gradients in snapshots: refused when true (netdef's hold weights and "
                                 "solver history)"),
    "weights": Str(None, "weights to start from, as --weights (relative to the solver file; Caffe 1.0's "
                         "SolverParameter.weights)", repeated=True),
    "debug_info": Bool(False, "accepted for Caffe compatibility"),
}

_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "enum": str, "block": MappingProxyType}


def _frozen(value):
    """Lists (repeated fields) as tuples and blocks as mapping proxies: a SolverConfig is immutable all the
    way down."""
    if isinstance(value, dict):
        return MappingProxyType({key: _frozen(item) for key, item in value.items()})
    return tuple(_frozen(item) for item in value) if isinstance(value, list) else value


def _thawed(value):
    """A frozen value as plain lists and dicts again."""
    if isinstance(value, MappingProxyType):
        return {key: _thawed(item) for key, item in value.items()}
    return [_thawed(item) for item in value] if isinstance(value, tuple) else value


def _default(f):
    """A SolverConfig field's default; a block's is made afresh for each config (dataclasses wants it so)."""
    if f.kind == "block" and not f.list_of:
        return dataclasses.field(default_factory=functools.partial(_frozen_default, f))
    return dataclasses.field(default=_frozen(f.value_or_default(None)))


def _frozen_default(f):
    return _frozen(f.value_or_default(None))


class _SolverConfigMethods:
    """What a SolverConfig does besides holding its fields."""

    def resolve(self, relative: str) -> Path:
        """A path written in the solver file, relative to that file; where nothing is there, relative to the
        nearest folder above it where it exists (a Caffe file's paths are relative to the Caffe root, where
        `caffe` runs: net: "examples/mnist/lenet_train_test.prototxt")."""
        beside = self.path.parent / relative
        return beside if Path(relative).is_absolute() or exists(beside) else caffe_rooted(relative, self.path.parent) or beside

    def pos(self, *path):
        """The file position of a field (e.g. `pos("test_iter", 1)`), None for a config made in Python."""
        return self.origin.pos(path) if self.origin is not None else None

    def replace(self, **changes):
        """A copy with `changes` (the command line's --net, --device), checked again as the file was."""
        return check_solver(dataclasses.replace(self, **{name: _frozen(v) for name, v in changes.items()}))

    def as_dict(self) -> dict:
        """Every solver field, in SOLVER_FIELDS order, repeated fields as lists (YAML and snapshots)."""
        return {name: _thawed(getattr(self, name)) for name in SOLVER_FIELDS}

    @property
    def net_file(self) -> str:
        """The TRAIN net's file as written (`net` or `train_net`)."""
        return self.net or self.train_net

    def test_nets(self) -> list:
        """Caffe's InitTestNets: one net per test_net file, then one instance of `net` per further test_iter."""
        return list(self.test_net) + [self.net] * (len(self.test_iter) - len(self.test_net))

    def test_states(self) -> list:
        """The level and stages of each test net (`test_state`, one per test net, or none)."""
        states = self.test_state or [{"level": 0, "stage": ()}] * len(self.test_nets())
        return [{"level": state["level"], "stages": tuple(state["stage"])} for state in states]

    def train_net_state(self, level: int = 0, stages=()) -> dict:
        """The TRAIN net's level and stages: `train_state`, a command line's --level (when not 0) replacing its
        level and its --stage values added to its stages, as `caffe train` does."""
        return {"level": level or self.train_state["level"], "stages": tuple(self.train_state["stage"]) + tuple(stages)}


SolverConfig = dataclasses.make_dataclass(
    "SolverConfig",
    [(name, tuple if f.repeated or f.list_of else _TYPES[f.kind] | None,
      _default(f)) for name, f in SOLVER_FIELDS.items()]
    + [("path", Path | None, dataclasses.field(default=None, compare=False)),
       ("origin", Origin | None, dataclasses.field(default=None, compare=False, repr=False))],
    bases=(_SolverConfigMethods,), frozen=True, kw_only=True)
SolverConfig.__module__ = __name__  # make_dataclass's own `module=` needs Python 3.12
SolverConfig.__doc__ = """A solver file, validated: one attribute per SOLVER_FIELDS entry (Caffe's names, every
default applied, repeated fields as tuples), the file's `path` and `origin` (positions for error messages).
Frozen: a changed configuration is a new one (`replace`), checked again. Made in Python (SolverConfig(base_lr=
0.01, ...)) it is not checked; load_solver and replace check it."""


def _net_problems(config) -> list:
    nets = [name for name in ("net", "train_net") if getattr(config, name)]
    if len(nets) != 1:
        return [((), "a solver needs exactly one of 'net' and 'train_net'", None, ", ".join(nets) or "neither")]
    return []


def _test_iter_problems(config) -> list:
    files, test_iter = config.test_net, config.test_iter
    if len(test_iter) < len(files) or (len(test_iter) > len(files) and not config.net):
        expected = f"{len(files)} values" + (" or more (one per instance of 'net')" if config.net else "")
        return [(("test_iter",), "give one 'test_iter' per test net", expected, str(len(test_iter)))]
    return []


def _test_state_problems(config) -> list:
    if config.test_state and len(config.test_state) != len(config.test_nets()):
        return [(("test_state",), "give one 'test_state' per test net, or none", f"{len(config.test_nets())}",
                 str(len(config.test_state)))]
    return []


def check_solver(config):
    """`config` if its fields fit together (the lr policy's fields, the update rule's values, the nets and
    their test_iter); otherwise NetdefError with every problem at its field's position."""
    found = policy_problems(config) + _net_problems(config) + rule_problems(config) + _test_iter_problems(config) \
        + _test_state_problems(config)
    if found:
        raise NetdefError([Problem(message, config.pos(*path), expected=expected, found=found)
                           for path, message, expected, found in found])
    return config


def solver_schema() -> dict:
    """The JSON Schema of solver files (`netdef schema solver`)."""
    from ..fields import block_schema
    from ..front.schema import SCHEMA_ID
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{SCHEMA_ID}/solver.json", "title": "netdef solver", **block_schema(SOLVER_FIELDS)}


def solver_from_yaml(data, source: Source, path=None) -> SolverConfig:
    """Validate a loaded solver file (netdef.front.load.load_yaml's value); raises NetdefError with every
    problem."""
    from jsonschema import Draft202012Validator
    from ..front.validate import schema_problems

    origin = Origin(source, ())
    if not isinstance(data, dict):
        raise NetdefError(Problem("a solver file must be a mapping", origin.pos()))
    data, problems = _inline_nets(data, origin)
    problems += schema_problems(Draft202012Validator(solver_schema()), data, origin)
    if problems:
        raise NetdefError(problems)
    values = apply_defaults(SOLVER_FIELDS, data)
    changes, problems = _caffe_meanings(data, values, origin)
    values = {name: _frozen(value) for name, value in {**values, **changes}.items()}
    config = SolverConfig(**values, path=Path(path if path is not None else source.file), origin=origin)
    try:
        check_solver(config)
    except NetdefError as exc:
        problems += exc.problems
    if problems:
        raise NetdefError(problems)
    return config


def _inline_nets(data: dict, origin: Origin):
    """Caffe's inline nets (net_param, train_net_param, test_net_param) as the net files they stand in for:
    FILE#FIELD (FILE#test_net_param.N), which the loader reads from this file, positions and all."""
    data, problems = dict(data), []
    for inline, field in INLINE_NET_FIELDS.items():
        if inline not in data:
            continue
        nets = data.pop(inline)
        nets = nets if isinstance(nets, list) and inline == "test_net_param" else [nets]
        if not all(isinstance(net, dict) for net in nets):
            problems.append(Problem(f"'{inline}' must be a net (a mapping with layers)", origin.pos((inline,))))
            continue
        if inline != "test_net_param" and field in data:
            problems.append(Problem(f"a solver gives its net once: '{field}' or '{inline}'", origin.pos((inline,)),
                                    found="both"))
            continue
        written = Path(origin.source.file).resolve()
        refs = [f"{written}#{inline}" + (f".{i}" if inline == "test_net_param" else "") for i in range(len(nets))]
        data[field] = refs + list(as_list(data.get(field))) if field == "test_net" else refs[0]
    return data, problems


def _caffe_meanings(data: dict, values: dict, origin: Origin) -> dict:
    """Caffe's own fields as the netdef fields they mean (solver_type -> type, solver_mode/device_id ->
    device): (changes, problems), the problems refusing what netdef cannot honour, with the reason."""
    changes, problems = {}, []
    if data.get("solver_type") is not None:
        changes["type"] = LEGACY_SOLVER_TYPES[data["solver_type"]]
        if data.get("type", changes["type"]) != changes["type"]:
            problems.append(Problem("'solver_type' and 'type' disagree", origin.pos(("solver_type",)),
                                    expected=f"type {changes['type']}", found=f"type {data['type']}"))
    if data.get("solver_mode") is not None and "device" not in data:
        gpu = data["solver_mode"] == "GPU"
        changes["device"] = (f"cuda:{values['device_id']}" if "device_id" in data else "auto") if gpu else "cpu"
    if values["snapshot_diff"]:
        problems.append(Problem("netdef does not write gradients into snapshots (snapshot_diff): a resumed run "
                                "recomputes them", origin.pos(("snapshot_diff",)), hint="leave snapshot_diff out"))
    return changes, problems


def load_solver(path) -> SolverConfig:
    """Load and validate a solver file; raises NetdefError with every problem."""
    return solver_from_yaml(*load_yaml(path), path)
