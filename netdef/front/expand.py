"""Stage 3, expand: replace block instances (`use:`) by the layers of their blocks.

A block is a named sub-graph with arguments. Inside it any value may be a template "${expression}":
a whole-string template keeps the expression's type (`num_output: ${mid * 4}` is an integer), a
template inside a longer string is formatted into it (`name: ${name}_branch2a`). Each instance sees
its arguments plus `name` (instance name), `bottom`, `top` (default: the instance name), and with
`repeat: n` (or a `with_each:` table of n rows) also `i` (1..n), `n` and `letter` (a, b, c, ...).

Templates may read the shapes of blobs made by the layers expanded so far: `shape(blob)` and
`channels(blob)`. They are inferred (netdef.front.graph and infer, as for the whole net) from the layers
before the template, in the TRAIN phase at level 0 with no stages, or in TEST for a blob only TEST makes.
"""
from __future__ import annotations

import ast
import copy
import json
import operator
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..errors import NetdefError, Problem, did_you_mean, show
from ..fields import as_list
from ..layers.plugins import PluginError, load_plugin
from .limits import (MAX_LAYERS, MAX_REPEAT, MAX_TEMPLATE_BITS, MAX_TEMPLATE_CHARS, MAX_TEMPLATE_ITEMS,
                     MAX_TEMPLATE_STEPS)
from .graph import NetState, build_graph
from .infer import infer
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
# Names a repeated instance defines; elsewhere they are a mistake worth explaining, not just "unknown".
_REPETITION_NAMES = ("i", "n", "letter")


class TemplateError(Exception):
    """A template that cannot be evaluated; `path` says where inside the entry it was written."""

    def __init__(self, message, path=()):
        super().__init__(message)
        self.path = tuple(path)


def evaluate(expression: str, scope: dict, functions=None):
    """Evaluate a template expression: arithmetic, comparisons, `a if c else b`, indexing, a few functions
    (`functions` adds the expander's shape readers). No attribute access and no other calls, so a net file
    can never run code; evaluation is bounded (netdef.front.limits), so it can never run for long or build
    huge values either."""
    if len(expression) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"template expression longer than {MAX_TEMPLATE_CHARS} characters")
    return _Evaluation(scope, {**_FUNCTIONS, **(functions or {})}).run(_parse(expression))


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

    def __init__(self, scope: dict, functions: dict):
        self.scope, self.functions, self.steps = scope, functions, 0

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
            if node.id in ("true", "false", "null"):
                return None if node.id == "null" else node.id == "true"
            if node.id in _REPETITION_NAMES:
                raise TemplateError(f"'{node.id}' is only defined in a repeated instance (a 'use:' entry with "
                                    "'repeat:' or 'with_each:'), in its name, top and with; pass it to the block "
                                    "as an argument to use it inside")
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
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in self.functions \
                and not node.keywords:
            result = self.functions[node.func.id](*[_eval(a) for a in node.args])
            if _too_big(result):
                raise TemplateError("the result is too large for a template value")
            return result
        raise TemplateError(f"'{ast.unparse(node)}' is not allowed in a template")


def substitute(value, scope: dict, path=(), functions=None):
    """Resolve every template in a (nested) value; a TemplateError carries the failing value's path
    (`path` is the value's own path, for that purpose)."""
    if isinstance(value, dict):
        return {k: substitute(v, scope, path + (k,), functions) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, scope, path + (i,), functions) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        try:
            whole = _WHOLE.match(value)
            if whole:
                return evaluate(whole.group(1), scope, functions)
            return _TEMPLATE.sub(lambda m: str(evaluate(m.group(1), scope, functions)), value)
        except TemplateError as exc:
            raise TemplateError(str(exc), path) from None
        except (ArithmeticError, TypeError, ValueError, LookupError, MemoryError) as exc:
            raise TemplateError(f"cannot evaluate '{value}': {exc or type(exc).__name__}", path) from None
    return value


@dataclass
class Block:
    name: str
    args: dict  # argument -> default
    required: frozenset  # the arguments an instance must give
    layers: list
    source: Source
    path: tuple  # ("blocks", name) in its file


def _is_declared(value) -> bool:
    """`{default: X}` (optionally with `doc:`): an argument declared with its default written out, so that
    a default of null makes an optional argument rather than a required one."""
    return isinstance(value, dict) and "default" in value and set(value) <= {"default", "doc"}


def _block(name, body, source) -> Block:
    """A block definition: `args` maps each argument to its default; a plain null marks it required."""
    args = body.get("args") or {}
    defaults = {key: value["default"] if _is_declared(value) else value for key, value in args.items()}
    required = frozenset(key for key, value in args.items() if value is None)
    return Block(name, defaults, required, body["layers"], source, ("blocks", name))


@dataclass
class ExpandedNet:
    """The flat net: layer dicts (as Caffe would see them), each with its Origin, and the plugin modules its
    files named (their layer types are needed to read it again)."""
    name: str
    layers: list
    origins: list
    plugins: list = field(default_factory=list)

    def to_yaml_data(self) -> dict:
        return {"name": self.name, **({"plugins": self.plugins} if self.plugins else {}), "layers": self.layers}


def _load_blocks(data, source: Source, file: Path, seen: set, problems: list, root: Path | None,
                 plugins: list) -> dict:
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
            plugins += load_plugins(other, other_source)
            validate_document(other, other_source)
        except NetdefError as exc:
            if not path.exists():
                problems.append(Problem(f"imported file not found: {imported}", source.pos(("import", i))))
                continue
            problems.extend(exc.problems)
            continue
        for name, block in _load_blocks(other, other_source, path, seen, problems, root, plugins).items():
            blocks.setdefault(name, block)
    for name, body in (data.get("blocks") or {}).items():
        if name in blocks and blocks[name].source is not source:
            problems.append(Problem(f"block '{name}' is also defined in {blocks[name].source.file}",
                                    source.pos(("blocks", name), key=True)))
        blocks[name] = _block(name, body, source)
    return blocks


class _TooManyLayers(Exception):
    """Expansion stops at MAX_LAYERS: a net past it is a runaway repeat, not a model."""

    def __init__(self, origin: Origin):
        super().__init__()
        self.problem = Problem(f"the net expands to more than {MAX_LAYERS:,} layers", origin.pos(),
                               via=origin.via[-1:], hint="is a 'repeat:' or a block's use of itself much larger "
                                                         "than meant?")


def _repetition_note(k: int, n: int) -> str:
    return f" (in repetition {k} of {n}, i = {k})" if n > 1 else ""


def _param_as_list(entry: dict) -> dict:
    """`param: {lr_mult: 0}` is one entry, as every other repeated field takes one value: Caffe sees a list."""
    return {**entry, "param": [entry["param"]]} if isinstance(entry.get("param"), dict) else entry


def _with_each_rows(table, origin: Origin, problems: list):
    """`with_each:` as one {argument: (value, path)} row per repetition: a list of mappings (a row each),
    or a mapping of equally long lists (a column each)."""
    if isinstance(table, list) and table and all(isinstance(row, dict) for row in table):
        return [{key: (value, ("with_each", k, key)) for key, value in row.items()} for k, row in enumerate(table)]
    if isinstance(table, dict) and table and all(isinstance(column, list) for column in table.values()):
        lengths = {len(column) for column in table.values()}
        if len(lengths) == 1 and 0 not in lengths:
            return [{key: (column[k], ("with_each", key, k)) for key, column in table.items()}
                    for k in range(lengths.pop())]
        problems.append(Problem("the columns of 'with_each' differ in length", origin.pos(("with_each",)),
                                expected="one value per repetition in every column",
                                found=", ".join(f"{key}: {len(column)}" for key, column in table.items())))
        return None
    problems.append(Problem("invalid 'with_each'", origin.pos(("with_each",)),
                            expected="a list of argument mappings (one per repetition) or a mapping of "
                                     "equally long lists (one column per argument)", found=show(table)))
    return None


class _Expander:
    def __init__(self, blocks: dict, net_name: str):
        self.blocks, self.net_name = blocks, net_name
        self.layers, self.origins, self.problems = [], [], []
        self.valid = set()  # schema-valid layers, by _validity_key
        self.rules = []  # include/exclude of the instances being expanded, outermost first
        self.last_tops = {}  # name of a repeated instance's last repetition -> (its given top, Origin, repeat)
        self.functions = {"shape": self.shape, "channels": self.channels}
        self._inferred = (None, None)  # (layer count, blob -> shape) of the last shape inference

    def substitute(self, value, scope, path=()):
        return substitute(value, scope, path, self.functions)

    def entries(self, entries, source, prefix, via, scope, depth):
        for i, entry in enumerate(entries):
            origin = Origin(source, prefix + (i,), via)
            try:
                if scope is not None or "use" in entry:
                    # An instance's own name, top and arguments are resolved per repetition (they may use i);
                    # its other values (include, repeat, ...) here, with no names to use at the top level.
                    late = ("name", "top", "with", "with_each") if "use" in entry else ()
                    entry = {k: (v if k in late else self.substitute(v, scope or {}, (k,))) for k, v in entry.items()}
                if not entry.pop("if", True):
                    continue
                if "use" in entry:
                    self.instance(entry, origin, scope, depth)
                else:
                    self.add_layer(entry, origin, scope)
            except TemplateError as exc:
                self.problems.append(Problem(str(exc), origin.pos(exc.path), layer=_shown_name(entry, scope),
                                             via=via))

    def add_layer(self, entry, origin, scope):
        if scope is not None and origin.via:
            self.problems += self.layer_problems(entry, origin)
        if len(self.layers) >= MAX_LAYERS:
            raise _TooManyLayers(origin)
        entry = _param_as_list(entry)
        for rules in reversed(self.rules):  # the innermost instance's rule wins, and a layer's own over all
            for rule, value in rules.items():
                entry.setdefault(rule, copy.deepcopy(value))  # one object per layer: no YAML aliases in `expand`
        self.layers.append(entry)
        self.origins.append(origin)

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

    # ---- shapes, for the templates that read them ----
    def shape(self, blob):
        """`shape(blob)`: the blob's shape (batch axis first) as the layers expanded so far make it."""
        if not isinstance(blob, str):
            raise TemplateError(f"shape() and channels() take one blob name, found {show(blob)}")
        shapes = self.inferred_shapes(blob)
        if blob not in shapes:
            hint = did_you_mean(blob, shapes)
            raise TemplateError(f"no layer before this template makes a blob named '{blob}', so its shape is "
                                "unknown" + (f"; {hint}" if hint else ""))
        return list(shapes[blob])

    def channels(self, blob):
        """`channels(blob)`: axis 1 of the blob's shape."""
        shape = self.shape(blob)
        if len(shape) < 2:
            raise TemplateError(f"blob '{blob}' has no channel axis (its shape is {shape})")
        return shape[1]

    def inferred_shapes(self, blob) -> dict:
        """Every blob's shape from the layers so far: TRAIN's, or TEST's for a blob only TEST makes.
        Inferred again only when layers added since the last inference write `blob` (a blob's shape does
        not change when later layers read it), so a block that asks for its bottom's channels many times
        costs one inference."""
        count, shapes = self._inferred
        if count != len(self.layers) and (shapes is None or blob not in shapes or any(
                blob in as_list(layer.get("top")) for layer in self.layers[count:])):
            shapes = None if self.problems else self.infer_so_far()
            self._inferred = (len(self.layers), shapes)
        if shapes is None:
            raise TemplateError("shapes are not inferred while the net has other problems: fix those first")
        return shapes

    def infer_so_far(self):
        so_far = ExpandedNet(self.net_name, list(self.layers), list(self.origins))
        shapes = {}
        try:
            for phase in ("TEST", "TRAIN"):  # TRAIN's last: its shapes win
                shapes.update(infer(build_graph(so_far, NetState(phase), complete=False)).blob_shapes)
        except NetdefError as exc:
            self.problems += exc.problems
            return None
        return shapes

    # ---- instances ----
    def instance(self, use, origin: Origin, outer_scope, depth):
        block, rows = self.instance_block(use, origin, depth), self.repetitions(use, origin)
        if block is None or rows is None:
            return
        given = use.get("with") or {}
        unknown = [(key, ("with", key)) for key in given if key not in block.args]
        unknown += [(key, path) for row in rows for key, (_, path) in row.items() if key not in block.args]
        for key, path in unknown:
            self.problems.append(Problem(f"block '{block.name}' has no argument '{key}'", origin.pos(path, key=True),
                                         layer=use["name"], hint=did_you_mean(key, block.args)))
        if unknown:
            return
        repeated = use.get("repeat") is not None or "with_each" in use
        self.rules.append({rule: use[rule] for rule in ("include", "exclude") if rule in use})
        try:
            bottom = use.get("bottom")
            for k, row in enumerate(rows, 1):
                scope = dict(outer_scope or {})
                if repeated:
                    scope.update(i=k, n=len(rows), letter=chr(ord("a") + k - 1))
                bottom = self.repetition(use, block, row, origin, scope, bottom, (k, len(rows)), depth)
                if bottom is None:
                    return
        finally:
            self.rules.pop()

    def instance_block(self, use, origin, depth):
        """The block an instance names, or None after reporting why it cannot be expanded."""
        if not isinstance(use["use"], str):
            self.problems.append(Problem("'use' names a block", origin.pos(("use",)), expected="a block name",
                                         found=show(use["use"])))
            return None
        for rule in ("include", "exclude"):
            if rule in use and not all(isinstance(r, dict) for r in as_list(use[rule])):
                self.problems.append(Problem(f"invalid '{rule}'", origin.pos((rule,)), expected="a rule mapping "
                                             "(phase, stage, ...) or a list of them", found=show(use[rule])))
                return None
        block = self.blocks.get(use["use"])
        if block is None:
            self.problems.append(Problem(f"unknown block '{use['use']}'", origin.pos(("use",)),
                                         layer=use["name"], hint=did_you_mean(use["use"], self.blocks)))
            return None
        if depth >= MAX_DEPTH:
            # Only the outermost instance is named: the chain of 32 nested ones would bury the message.
            self.problems.append(Problem(f"block '{block.name}' is nested deeper than {MAX_DEPTH} levels (does it "
                                         "use itself without an 'if:' that stops it?)", origin.pos(("use",)),
                                         via=origin.via[-1:]))
            return None
        return block

    def repetitions(self, use, origin):
        """One {argument: (value, path)} row per repetition (empty rows without `with_each:`), or None."""
        repeat = use.get("repeat")
        if repeat is not None and (not isinstance(repeat, int) or isinstance(repeat, bool)
                                   or not 1 <= repeat <= MAX_REPEAT):
            self.problems.append(Problem("invalid 'repeat'", origin.pos(("repeat",)),
                                         expected=f"a whole number from 1 to {MAX_REPEAT:,}", found=show(repeat)))
            return None
        if "with_each" not in use:
            return [{} for _ in range(repeat or 1)]
        rows = _with_each_rows(use["with_each"], origin, self.problems)
        if rows is not None and repeat is not None and repeat != len(rows):
            self.problems.append(Problem("'repeat' and 'with_each' disagree", origin.pos(("repeat",)),
                                         expected=f"repeat: {len(rows)} (the rows of with_each), or no repeat",
                                         found=f"repeat: {repeat}"))
            return None
        if rows is not None and len(rows) > MAX_REPEAT:
            self.problems.append(Problem("too many rows in 'with_each'", origin.pos(("with_each",)),
                                         expected=f"at most {MAX_REPEAT:,}", found=str(len(rows))))
            return None
        return rows

    def repetition(self, use, block, row, origin, scope, bottom, k_of_n, depth):
        """Expand repetition k of n; returns its top (the next repetition's bottom), None after a problem."""
        k, n = k_of_n
        try:
            name = self.substitute(use["name"], scope, ("name",))
            if n > 1 and name == use["name"]:
                name = f"{name}_{k}"
            top = self.top(use, scope, k, n, name)
            given = use.get("with") or {}
            args = {key: self.substitute(row[key][0], scope, row[key][1]) if key in row
                    else self.substitute(given.get(key, default), scope, ("with", key))
                    for key, default in block.args.items()}
        except TemplateError as exc:
            raise TemplateError(f"{exc}{_repetition_note(k, n)}", exc.path) from None
        missing = sorted(key for key in block.required if args[key] is None)
        for key in missing:
            self.problems.append(Problem(f"block '{block.name}' needs argument '{key}'{_repetition_note(k, n)}",
                                         origin.pos(("with",)) or origin.pos(), layer=name,
                                         expected=f"'{key}' under 'with:'"))
        if missing:
            return None
        inner_scope = {**args, "name": name, "bottom": bottom, "top": top}
        via = ((block.name, name, origin.pos(("use",))),) + origin.via
        before, problems_before = len(self.layers), len(self.problems)
        self.entries(block.layers, block.source, block.path + ("layers",), via, inner_scope, depth + 1)
        for problem in self.problems[problems_before:]:
            problem.message += _repetition_note(k, n)
        if len(self.problems) > problems_before:
            return None  # what the instance produces is unknown once its expansion failed
        self._check_produces(top, before, block, origin, name)
        if k == n > 1 and top != name:
            self.last_tops[name] = (top, origin, n)
        return top

    def top(self, use, scope, k, repeat, name):
        """The instance's top. A repeated instance's top that is the same for every repetition (a literal,
        or a template that does not use i/letter, such as `${top}` inside a block) belongs to the last
        instance; the others are named after themselves."""
        if not use.get("top"):
            return name
        top = self.substitute(use["top"], scope, ("top",))
        if k == repeat:
            return top
        last = {**scope, "i": repeat, "letter": chr(ord("a") + repeat - 1)}
        varies = "${" in use["top"] and top != self.substitute(use["top"], last, ("top",))
        return top if varies else name

    def _check_produces(self, top, first, block, origin, name):
        produced = {t for layer in self.layers[first:] for t in as_list(layer.get("top"))}
        if top not in produced and len(self.layers) > first:
            self.problems.append(Problem(f"block '{block.name}' instance '{name}' produces no blob named "
                                         f"'{top}' (its top)", origin.pos(("use",)), layer=name,
                                         found=", ".join(sorted(produced)) or "no tops",
                                         hint="name the block's last top '${top}'"))

    def misread_last_tops(self) -> list:
        """A bottom that names the last repetition of a repeated instance, whose given top has another name:
        the earlier repetitions' tops are their names, so the names suggest a blob the net does not have."""
        produced = {t for layer in self.layers for t in as_list(layer.get("top"))}
        problems = []
        for layer, origin in zip(self.layers, self.origins):
            bottoms = layer.get("bottom")
            for j, bottom in enumerate(as_list(bottoms)):
                if bottom in produced or bottom not in self.last_tops:
                    continue
                top, instance, n = self.last_tops[bottom]
                problems.append(Problem(
                    f"bottom '{bottom}' is no blob: '{bottom}' is the last of {n} repetitions of the instance at "
                    f"{instance.pos(('use',))}, which writes the instance's top '{top}' instead (only the other "
                    "repetitions write tops named after themselves)", origin.pos(("bottom", j) if isinstance(
                        bottoms, list) else ("bottom",)), layer=layer.get("name"), via=origin.via,
                    hint=f"read '{top}'"))
        return problems


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


def load_plugins(data, source: Source) -> list:
    """Import the modules a net file names under `plugins:` (its folder first, then sys.path), so that their
    layer types are known when its layers are validated. The only code a net file runs is what it names here
    (or in a Python layer's python_param.module)."""
    names = data.get("plugins") if isinstance(data, dict) else None
    problems = []
    for index, name in enumerate(names if isinstance(names, list) else []):  # other values: the schema says
        try:
            load_plugin(name, Path(source.file).resolve().parent)
        except PluginError as exc:
            problems.append(Problem(exc.message, source.pos(("plugins", index)), hint=exc.hint))
    if problems:
        raise NetdefError(problems)
    return [name for name in names if isinstance(name, str)] if isinstance(names, list) else []


def expand(data, source: Source) -> ExpandedNet:
    """Validate a loaded net file and expand its blocks; raises NetdefError with every problem."""
    plugins = load_plugins(data, source)
    validate_document(data, source)
    problems = []
    if "layers" not in data:
        problems.append(Problem("a net file needs a 'layers' list", source.pos(()), expected="'layers:'"))
    file = Path(source.file)
    root = None if data.get("allow_outside_root") else file.resolve().parent
    blocks = _load_blocks(data, source, file, {file.resolve()}, problems, root, plugins)
    if problems:
        raise NetdefError(problems)  # instances of blocks that failed to load would only add noise
    name = str(data.get("name", file.stem))
    expander = _Expander(blocks, name)
    try:
        expander.entries(data.get("layers") or [], source, ("layers",), (), None, 0)
    except _TooManyLayers as exc:
        expander.problems.append(exc.problem)
    problems += expander.problems or expander.misread_last_tops()
    if problems:
        raise NetdefError(problems)
    return ExpandedNet(name, expander.layers, expander.origins, list(dict.fromkeys(plugins)))


def dump_net(expanded: ExpandedNet) -> str:
    """An expanded net as YAML text: a flat Caffe-style net that is valid netdef input again."""
    import yaml
    return yaml.safe_dump(expanded.to_yaml_data(), sort_keys=False, default_flow_style=None, width=110)


def rebased_layers(layers: list, old_dir: Path, new_dir: Path) -> list:
    """The layers with each relative path field rewritten from `old_dir` to `new_dir`, so that a copy of
    the net in `new_dir` names the same files."""
    from ..paths import moved_path
    return layers_with_paths_moved(layers, lambda value: moved_path(value, old_dir, new_dir))


def layers_with_paths_moved(layers: list, move) -> list:
    """The layers with the value of each path field (what its layer class marks as a file) passed through
    `move`; the other fields as they are."""
    from ..fields import rebase_paths
    from ..layers import LAYERS
    result = []
    for layer in layers:
        if not isinstance(layer, dict):
            result.append(layer)  # not a layer: left for validation to report
            continue
        blocks = getattr(LAYERS.get(layer.get("type")) if isinstance(layer.get("type"), str) else None, "blocks", {})
        result.append({key: rebase_paths(blocks[key], value, move) if key in blocks and isinstance(value, dict) else value
                       for key, value in layer.items()})
    return result
