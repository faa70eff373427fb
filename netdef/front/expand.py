"""Stage 3, expand: replace block instances (`use:`) by the layers of their blocks.

A block is a named sub-graph with arguments. Inside it any value may be a template "${expression}":
a whole-string template keeps the expression's type (`num_output: ${mid * 4}` is an integer), a
template inside a longer string is formatted into it (`name: ${name}_branch2a`). Each instance sees
its arguments plus `name` (instance name), `bottom`, `top` (default: the instance name), and with
`repeat: n` also `i` (1..n) and `letter` (a, b, c, ...).
"""
from __future__ import annotations

import ast
import copy
import json
import operator
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import NetdefError, Problem, did_you_mean, show
from ..fields import as_list
from .limits import (MAX_LAYERS, MAX_REPEAT, MAX_TEMPLATE_BITS, MAX_TEMPLATE_CHARS, MAX_TEMPLATE_ITEMS,
                     MAX_TEMPLATE_STEPS)
from .load import Origin, Source, load_yaml
from .validate import layer_problems, validate_document

_TEMPLATE = re.compile(r"\$\{([^}]*)\}")
_WHOLE = re.compile(r"^\$\{([^}]*)\}$")
MAX_DEPTH = 32

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
            ast.NotIn: lambda a, b: a not in b}
_FUNCTIONS = {"min": min, "max": max, "int": int, "float": float, "str": str, "len": len, "abs": abs}


class TemplateError(Exception):
    """A template that cannot be evaluated; `path` says where inside the entry it was written."""

    def __init__(self, message, path=()):
        super().__init__(message)
        self.path = tuple(path)


def evaluate(expression: str, scope: dict):
    """Evaluate a template expression: arithmetic, comparisons, `a if c else b`, indexing, a few functions.
    No attribute access and no other calls, so a net file can never run code; evaluation is bounded
    (netdef.front.limits), so it can never run for long or build huge values either."""
    if len(expression) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"template expression longer than {MAX_TEMPLATE_CHARS} characters")
    return _Evaluation(scope).run(_parse(expression))


@lru_cache(maxsize=4096)
def _parse(expression: str):
    """Blocks repeat the same few expressions thousands of times (ResNet-152): parse each once."""
    try:
        return ast.parse(expression.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise TemplateError(f"cannot parse expression {show(expression)}") from None


def _too_big(value) -> bool:
    """Past the limits: an integer of too many bits, or a string or list of too many items, counting the
    items of nested lists each time they appear (`[[1] * 1000] * 1000` holds a million)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() > MAX_TEMPLATE_BITS
    if isinstance(value, str):
        return len(value) > MAX_TEMPLATE_ITEMS
    if not isinstance(value, list):
        return False
    count, stack = 0, [value]
    while stack:
        items = stack.pop()
        count += len(items)
        if count > MAX_TEMPLATE_ITEMS:
            return True
        stack.extend(item for item in items if isinstance(item, list))
    return False


def _size_of_product(a, b) -> int:
    """The size of a * b before computing it: bits for integers, items for a repeated string or list."""
    if isinstance(a, int) and isinstance(b, int):
        return 0 if a.bit_length() + b.bit_length() <= MAX_TEMPLATE_BITS else MAX_TEMPLATE_BITS + 1
    sequence, times = (a, b) if isinstance(a, (str, list)) else (b, a)
    return len(sequence) * times if isinstance(sequence, (str, list)) and isinstance(times, int) else 0


def _bounded_binary(op, a, b):
    """Arithmetic whose result cannot outgrow the limits: `9**9**9` and `'a' * 10**10` are refused
    before they are computed, not after they exhaust the machine."""
    if isinstance(op, ast.Pow) and isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        if b * (abs(a).bit_length() - 1) > MAX_TEMPLATE_BITS:
            raise TemplateError(f"'{a} ** {b}' is too large (more than {MAX_TEMPLATE_BITS} bits)")
    if isinstance(op, ast.Mult) and _size_of_product(a, b) > max(MAX_TEMPLATE_ITEMS, MAX_TEMPLATE_BITS):
        raise TemplateError("the product is too large for a template value")
    result = _BINARY[type(op)](a, b)
    if _too_big(result):
        raise TemplateError("the result is too large for a template value")
    return result


class _Evaluation:
    """One expression's evaluation, counting its steps."""

    def __init__(self, scope: dict):
        self.scope, self.steps = scope, 0

    def run(self, node):
        try:
            return self.eval(node)
        except RecursionError:
            raise TemplateError("template expression nested too deeply") from None

    def eval(self, node):
        self.steps += 1
        if self.steps > MAX_TEMPLATE_STEPS:
            raise TemplateError(f"template expression takes more than {MAX_TEMPLATE_STEPS} steps")
        scope, _eval = self.scope, self.eval
        if isinstance(node, ast.Constant):
            if _too_big(node.value):
                raise TemplateError("a constant in the template is too large")
            return node.value
        if isinstance(node, ast.Name):
            if node.id in scope:
                return scope[node.id]
            if node.id in ("true", "false"):
                return node.id == "true"
            hint = did_you_mean(node.id, scope)
            raise TemplateError(f"unknown name '{node.id}' in template" + (f"; {hint}" if hint else ""))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _bounded_binary(node.op, _eval(node.left), _eval(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not, ast.UAdd)):
            value = _eval(node.operand)
            return -value if isinstance(node.op, ast.USub) else (not value if isinstance(node.op, ast.Not) else value)
        if isinstance(node, ast.BoolOp):
            values = [_eval(v) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.Compare):
            left = _eval(node.left)
            for op, right_node in zip(node.ops, node.comparators):
                right = _eval(right_node)
                if type(op) not in _COMPARE or not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return _eval(node.body) if _eval(node.test) else _eval(node.orelse)
        if isinstance(node, (ast.List, ast.Tuple)):
            return [_eval(e) for e in node.elts]
        if isinstance(node, ast.Subscript):
            return _eval(node.value)[_eval(node.slice)]
        if isinstance(node, ast.Slice):
            return slice(*(None if part is None else _eval(part) for part in (node.lower, node.upper, node.step)))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS \
                and not node.keywords:
            result = _FUNCTIONS[node.func.id](*[_eval(a) for a in node.args])
            if _too_big(result):
                raise TemplateError("the result is too large for a template value")
            return result
        raise TemplateError(f"'{ast.unparse(node)}' is not allowed in a template")


def substitute(value, scope: dict, path=()):
    """Resolve every template in a (nested) value; a TemplateError carries the failing value's path
    (`path` is the value's own path, for that purpose)."""
    if isinstance(value, dict):
        return {k: substitute(v, scope, path + (k,)) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, scope, path + (i,)) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        try:
            whole = _WHOLE.match(value)
            if whole:
                return evaluate(whole.group(1), scope)
            return _TEMPLATE.sub(lambda m: str(evaluate(m.group(1), scope)), value)
        except TemplateError as exc:
            raise TemplateError(str(exc), path) from None
        except (ArithmeticError, TypeError, ValueError, LookupError, MemoryError) as exc:
            raise TemplateError(f"cannot evaluate '{value}': {exc or type(exc).__name__}", path) from None
    return value


@dataclass
class Block:
    name: str
    args: dict
    layers: list
    source: Source
    path: tuple  # ("blocks", name) in its file


@dataclass
class ExpandedNet:
    """The flat net: layer dicts (as Caffe would see them), each with its Origin."""
    name: str
    layers: list
    origins: list

    def to_yaml_data(self) -> dict:
        return {"name": self.name, "layers": self.layers}


def _load_blocks(data, source: Source, file: Path, seen: set, problems: list, root: Path | None) -> dict:
    """The blocks of a file and of the files it imports. With a `root`, an imported file must lie inside
    that folder: a net file handed to netdef cannot make it read (and quote) files elsewhere."""
    blocks = {}
    for i, imported in enumerate(data.get("import") or []):
        path = (file.parent / imported).resolve()
        if path in seen:
            continue
        if root is not None and not path.is_relative_to(root):
            problems.append(Problem(f"imported file {imported} is outside the net's folder {root}",
                                    source.pos(("import", i)), hint="set 'allow_outside_root: true' at the top "
                                                                    "of the net file to allow it"))
            continue
        seen.add(path)
        try:
            other, other_source = load_yaml(path)
            validate_document(other, other_source)
        except NetdefError as exc:
            if not path.exists():
                problems.append(Problem(f"imported file not found: {imported}", source.pos(("import", i))))
                continue
            problems.extend(exc.problems)
            continue
        for name, block in _load_blocks(other, other_source, path, seen, problems, root).items():
            blocks.setdefault(name, block)
    for name, body in (data.get("blocks") or {}).items():
        if name in blocks and blocks[name].source is not source:
            problems.append(Problem(f"block '{name}' is also defined in {blocks[name].source.file}",
                                    source.pos(("blocks", name), key=True)))
        blocks[name] = Block(name, body.get("args") or {}, body["layers"], source, ("blocks", name))
    return blocks


class _TooManyLayers(Exception):
    """Expansion stops at MAX_LAYERS: a net past it is a runaway repeat, not a model."""

    def __init__(self, origin: Origin):
        super().__init__()
        self.problem = Problem(f"the net expands to more than {MAX_LAYERS:,} layers", origin.pos(),
                               via=origin.via[-1:], hint="is a 'repeat:' or a block's use of itself much larger "
                                                         "than meant?")


class _Expander:
    def __init__(self, blocks: dict):
        self.blocks = blocks
        self.layers, self.origins, self.problems = [], [], []
        self.valid = set()  # schema-valid layers, by _validity_key

    def entries(self, entries, source, prefix, via, scope, depth):
        for i, entry in enumerate(entries):
            origin = Origin(source, prefix + (i,), via)
            try:
                if scope is not None or "use" in entry:
                    # An instance's own name, top and arguments are resolved per repetition (they may use i);
                    # its other values (include, repeat, ...) here, with no names to use at the top level.
                    late = ("name", "top", "with") if "use" in entry else ()
                    entry = {k: (v if k in late else substitute(v, scope or {}, (k,))) for k, v in entry.items()}
                if not entry.pop("if", True):
                    continue
                if "use" in entry:
                    self.instance(entry, origin, scope, depth)
                else:
                    if scope is not None and via:
                        self.problems += self.layer_problems(entry, origin)
                    if len(self.layers) >= MAX_LAYERS:
                        raise _TooManyLayers(origin)
                    self.layers.append(entry)
                    self.origins.append(origin)
            except TemplateError as exc:
                self.problems.append(Problem(str(exc), origin.pos(exc.path), layer=_shown_name(entry, scope),
                                             via=via))

    def layer_problems(self, entry, origin):
        """Schema problems of a layer made by a block; a layer equal to one found valid before (up to its
        name, bottoms and tops, which the schema only needs to be strings) is not checked again."""
        key = _validity_key(entry)
        if key in self.valid:
            return []
        problems = layer_problems(entry, origin, templates=False)
        if not problems:
            self.valid.add(key)
        return problems

    def instance(self, use, origin: Origin, outer_scope, depth):
        repeat = 1 if use.get("repeat") is None else use["repeat"]
        if not isinstance(use["use"], str):
            self.problems.append(Problem("'use' names a block", origin.pos(("use",)), expected="a block name",
                                         found=show(use["use"])))
            return
        for rule in ("include", "exclude"):
            if rule in use and not all(isinstance(r, dict) for r in as_list(use[rule])):
                self.problems.append(Problem(f"invalid '{rule}'", origin.pos((rule,)), expected="a rule mapping "
                                             "(phase, stage, ...) or a list of them", found=show(use[rule])))
                return
        if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat <= MAX_REPEAT:
            self.problems.append(Problem("invalid 'repeat'", origin.pos(("repeat",)),
                                         expected=f"a whole number from 1 to {MAX_REPEAT:,}", found=show(repeat)))
            return
        block = self.blocks.get(use["use"])
        if block is None:
            self.problems.append(Problem(f"unknown block '{use['use']}'", origin.pos(("use",)),
                                         layer=use["name"], hint=did_you_mean(use["use"], self.blocks)))
            return
        if depth >= MAX_DEPTH:
            # Only the outermost instance is named: the chain of 32 nested ones would bury the message.
            self.problems.append(Problem(f"block '{block.name}' is nested deeper than {MAX_DEPTH} levels (does it "
                                         "use itself without an 'if:' that stops it?)", origin.pos(("use",)),
                                         via=origin.via[-1:]))
            return
        given = use.get("with") or {}
        unknown = [k for k in given if k not in block.args]
        for key in unknown:
            self.problems.append(Problem(f"block '{block.name}' has no argument '{key}'",
                                         origin.pos(("with", key), key=True), layer=use["name"],
                                         hint=did_you_mean(key, block.args)))
        bottom = use.get("bottom")
        for k in range(1, repeat + 1):
            scope = {**(outer_scope or {}), "i": k, "n": repeat, "letter": chr(ord("a") + k - 1)}
            name = substitute(use["name"], scope)
            if repeat > 1 and name == use["name"]:
                name = f"{name}_{k}"
            top = self._top(use, scope, k, repeat, name)
            args = {key: substitute(given.get(key, default), scope, ("with", key))
                    for key, default in block.args.items()}
            missing = [key for key, value in args.items() if value is None]
            for key in missing:
                self.problems.append(Problem(f"block '{block.name}' needs argument '{key}'",
                                             origin.pos(("with",)) or origin.pos(), layer=name,
                                             expected=f"'{key}' under 'with:'"))
            if missing or unknown:
                return
            inner_scope = {**args, "name": name, "bottom": bottom, "top": top}
            via = ((block.name, name, origin.pos(("use",))),) + origin.via
            before, problems_before = len(self.layers), len(self.problems)
            self.entries(block.layers, block.source, block.path + ("layers",), via, inner_scope, depth + 1)
            if len(self.problems) > problems_before:
                return  # what the instance produces is unknown once its expansion failed
            self._check_produces(top, before, block, origin, name)
            for layer in self.layers[before:]:
                for rule in ("include", "exclude"):
                    if rule in use and rule not in layer:
                        layer[rule] = copy.deepcopy(use[rule])  # one object per layer: no YAML aliases in `expand`
            bottom = top

    @staticmethod
    def _top(use, scope, k, repeat, name):
        """The instance's top. A repeated instance's top that is the same for every repetition (a literal,
        or a template that does not use i/letter, such as `${top}` inside a block) belongs to the last
        instance; the others are named after themselves."""
        if not use.get("top"):
            return name
        top = substitute(use["top"], scope)
        if k == repeat:
            return top
        varies = "${" in use["top"] and top != substitute(use["top"], {**scope, "i": repeat, "letter": chr(ord("a") + repeat - 1)})
        return top if varies else name

    def _check_produces(self, top, first, block, origin, name):
        produced = {t for layer in self.layers[first:] for t in as_list(layer.get("top"))}
        if top not in produced and len(self.layers) > first:
            self.problems.append(Problem(f"block '{block.name}' instance '{name}' produces no blob named "
                                         f"'{top}' (its top)", origin.pos(("use",)), layer=name,
                                         found=", ".join(sorted(produced)) or "no tops",
                                         hint="name the block's last top '${top}'"))


def _validity_key(entry) -> str:
    def blank(value):
        if isinstance(value, str):
            return ""
        return [blank(v) for v in value] if isinstance(value, list) else value
    return json.dumps({k: blank(v) if k in ("name", "bottom", "top") else v for k, v in entry.items()},
                      sort_keys=True, default=repr)


def _shown_name(entry, scope):
    """An entry's name for messages: resolved when its own template allows."""
    try:
        return substitute(entry.get("name"), scope or {})
    except TemplateError:
        return entry.get("name")


def expand(data, source: Source) -> ExpandedNet:
    """Validate a loaded net file and expand its blocks; raises NetdefError with every problem."""
    validate_document(data, source)
    problems = []
    if "layers" not in data:
        problems.append(Problem("a net file needs a 'layers' list", source.pos(()), expected="'layers:'"))
    file = Path(source.file)
    root = None if data.get("allow_outside_root") else file.resolve().parent
    blocks = _load_blocks(data, source, file, {file.resolve()}, problems, root)
    if problems:
        raise NetdefError(problems)  # instances of blocks that failed to load would only add noise
    expander = _Expander(blocks)
    try:
        expander.entries(data.get("layers") or [], source, ("layers",), (), None, 0)
    except _TooManyLayers as exc:
        expander.problems.append(exc.problem)
    problems += expander.problems
    if problems:
        raise NetdefError(problems)
    return ExpandedNet(str(data.get("name", file.stem)), expander.layers, expander.origins)


def dump_net(expanded: ExpandedNet) -> str:
    """An expanded net as YAML text: a flat Caffe-style net that is valid netdef input again."""
    import yaml
    return yaml.safe_dump(expanded.to_yaml_data(), sort_keys=False, default_flow_style=None, width=110)
