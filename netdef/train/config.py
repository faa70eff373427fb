"""Solver files: Caffe's SolverParameter names, validated by the same schema machinery as nets."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import NetdefError, Problem
from ..fields import Bool, Enum, Float, Int, Str, apply_defaults
from ..front.load import Origin, load_yaml

LR_POLICIES = ["fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid"]
SOLVER_TYPES = ["SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"]
SIGNAL_EFFECTS = ("stop", "snapshot", "none")  # what SIGINT/SIGHUP do during `netdef train`, as Caffe

SOLVER_FIELDS = {
    "net": Str(None, "net file holding TRAIN and TEST layers (relative to the solver file)"),
    "train_net": Str(None, "net file for training only"),
    "test_net": Str(None, "net file(s) for testing only", repeated=True),
    "test_iter": Int(None, "batches per test pass (one per test net)", repeated=True, minimum=1),
    "test_interval": Int(0, "test every this many iterations (0: never)", minimum=0),
    "test_initialization": Bool(True, "also test before the first iteration"),
    "base_lr": Float(None, "base learning rate", required=True, minimum=0),
    "lr_policy": Enum(LR_POLICIES, "fixed", "learning-rate schedule"),
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
    "type": Enum(SOLVER_TYPES, "SGD", "update rule"),
    "clip_gradients": Float(-1.0, "if >= 0, scale gradients so that their global L2 norm is at most this"),
    "iter_size": Int(1, "accumulate gradients over this many batches per update", minimum=1),
    "average_loss": Int(1, "displayed loss: mean over this many iterations", minimum=1),
    "display": Int(0, "log every this many iterations (0: never)", minimum=0),
    "max_iter": Int(None, "number of updates", required=True, minimum=0),
    "snapshot": Int(0, "snapshot every this many iterations (0: only at the end)", minimum=0),
    "snapshot_prefix": Str(None, "snapshot path prefix (relative to the solver file); files are "
                                 "<prefix>_iter_<N>.pt"),
    "snapshot_after_train": Bool(True, "snapshot after the last iteration"),
    "random_seed": Int(-1, "seed for weights, data order and dropout (< 0: from the clock)"),
    "device": Str("auto", "auto, cpu, cuda or cuda:N (netdef)"),
    "precision": Enum(["fp32", "bf16", "fp16"], "fp32", "autocast precision of forward passes (netdef)"),
    "log_dir": Str(None, "run folder for TensorBoard events and resolved configs (netdef; default "
                         "runs/<solver name>)"),
    "solver_mode": Enum(["CPU", "GPU"], None, "accepted for Caffe compatibility; use device"),
    "debug_info": Bool(False, "accepted for Caffe compatibility"),
}


@dataclass
class SolverConfig:
    path: Path
    values: dict  # every field, defaults applied
    raw: dict
    origin: Origin

    def __getattr__(self, name):
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def resolve(self, relative: str) -> Path:
        """A path written in the solver file, relative to that file."""
        return (self.path.parent / relative) if not Path(relative).is_absolute() else Path(relative)


def _cross_field_problems(values, origin) -> list:
    problems = []

    def need(field, when):
        if values[field] is None:
            problems.append(Problem(f"lr_policy '{values['lr_policy']}' needs '{field}'", origin.pos(("lr_policy",)),
                                    expected=f"'{field}:' ({when})"))
    policy = values["lr_policy"]
    for field in {"step": ["gamma", "stepsize"], "exp": ["gamma"], "inv": ["gamma", "power"],
                  "multistep": ["gamma", "stepvalue"], "poly": ["power"], "sigmoid": ["gamma", "stepsize"]}.get(policy, []):
        if field == "stepvalue" and not values["stepvalue"]:
            problems.append(Problem("lr_policy 'multistep' needs 'stepvalue'", origin.pos(("lr_policy",)),
                                    expected="a list of iterations"))
        elif field != "stepvalue":
            need(field, "see the README's lr_policy table")
    nets = [f for f in ("net", "train_net") if values[f]]
    if len(nets) != 1:
        problems.append(Problem("a solver needs exactly one of 'net' and 'train_net'", origin.pos(()),
                                found=", ".join(nets) or "neither"))
    if values["type"] in ("AdaGrad", "RMSProp") and values["momentum"]:
        problems.append(Problem(f"{values['type']} takes no momentum", origin.pos(("momentum",)),
                                expected="momentum: 0", found=str(values["momentum"])))
    return problems + _update_rule_problems(values, origin)


def _update_rule_problems(values, origin) -> list:
    """Values that make Caffe's update formulas or lr policies divide by zero or go backwards."""
    problems = []

    def below_one(field, why):
        if values[field] >= 1:
            problems.append(Problem(f"{values['type']} needs {field} < 1 ({why})", origin.pos((field,)),
                                    expected=f"0 <= {field} < 1", found=str(values[field])))
    if values["type"] == "RMSProp":
        below_one("rms_decay", "the decay of the running mean of squared gradients")
    if values["type"] == "Adam":
        below_one("momentum", "beta1; the bias correction divides by 1 - beta1^t")
        below_one("momentum2", "beta2; the bias correction is sqrt(1 - beta2^t)")
    stepvalues = values["stepvalue"] or []
    if values["lr_policy"] == "multistep":
        for index in range(1, len(stepvalues)):
            if stepvalues[index] <= stepvalues[index - 1]:
                problems.append(Problem("multistep 'stepvalue' must increase", origin.pos(("stepvalue", index)),
                                        expected=f"a value > {stepvalues[index - 1]}", found=str(stepvalues[index])))
    if values["lr_policy"] == "poly" and values["max_iter"] < 1:
        problems.append(Problem("lr_policy 'poly' divides by max_iter", origin.pos(("max_iter",)),
                                expected="max_iter >= 1", found=str(values["max_iter"])))
    return problems


def solver_schema() -> dict:
    """The JSON Schema of solver files (`netdef schema solver`)."""
    from ..fields import block_schema
    from ..front.schema import SCHEMA_ID
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{SCHEMA_ID}/solver.json", "title": "netdef solver", **block_schema(SOLVER_FIELDS)}


def load_solver(path) -> SolverConfig:
    """Load and validate a solver file; raises NetdefError with every problem."""
    from jsonschema import Draft202012Validator
    from ..front.validate import schema_problems

    data, source = load_yaml(path)
    origin = Origin(source, ())
    problems = schema_problems(Draft202012Validator(solver_schema()), data, origin) if isinstance(data, dict) \
        else [Problem("a solver file must be a mapping", origin.pos())]
    if problems:
        raise NetdefError(problems)
    values = apply_defaults(SOLVER_FIELDS, data)
    problems = _cross_field_problems(values, origin)
    if problems:
        raise NetdefError(problems)
    return SolverConfig(Path(path), values, data, origin)
