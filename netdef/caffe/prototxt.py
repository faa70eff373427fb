"""Caffe's protobuf text format (.prototxt) read into the documents netdef's YAML files hold, with the
position of every field, so that every command reads a .prototxt as it reads YAML and its errors point at
the prototxt's own lines.

    data, source = read_prototxt(text, "deploy.prototxt")   # as netdef.front.load.load_yaml_text returns

Without caffe.proto at hand the parser cannot know which fields are `repeated`: a field written more
than once becomes a list, and the net conversion then uses netdef's own field tables (the layer classes)
to turn every repeated Caffe field into a list, `layer` into `layers`, and Caffe's deprecated net-level
`input`/`input_shape`/`input_dim` into an Input layer (as Caffe's UpgradeNetInput does). A legacy V1 net
(`layers { type: CONVOLUTION }`) is upgraded first (netdef.caffe.upgrade). A solver (chosen by its fields,
as Caffe's tools choose by the command) keeps its fields; its inline nets (`net_param`, ...) are
converted as nets.

Grammar (the subset Caffe files use): `name: value`, `name { ... }` or `name: { ... }` (also `< >`),
`name: [v1, v2]`; values are numbers, quoted strings (adjacent ones concatenated, C escapes), enum
names and true/false; `#` starts a comment; `,` and `;` between fields are optional.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

from ..errors import NetdefError, Pos, Problem
from ..fields import as_list
from ..front.limits import MAX_NESTING
from ..front.load import Source

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[fF]?(?![\w.]))
  | (?P<name>-?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}<>\[\]:,;])
""", re.X)

_CLOSING = {"{": "}", "<": ">"}
_TRUE, _FALSE = {"true", "True", "t"}, {"false", "False", "f"}
_SPECIAL_FLOATS = {"inf": float("inf"), "infinity": float("inf"), "-inf": float("-inf"),
                   "-infinity": float("-inf"), "nan": float("nan")}

# Fields that make a prototxt a SolverParameter rather than a NetParameter (a net has `layer`, `layers`
# or `input`; every solver names its net or its learning rate).
SOLVER_MARKS = ("net", "train_net", "test_net", "net_param", "train_net_param", "test_net_param", "base_lr",
                "max_iter", "lr_policy", "solver_type", "test_iter", "snapshot_prefix")
NET_MARKS = ("layer", "layers", "input")
INLINE_NETS = ("net_param", "train_net_param", "test_net_param")


class Message(dict):
    """One parsed message: a dict that also knows where it and each occurrence of its fields were written
    (`key_pos[key]`, `value_pos[key]`: one Pos per occurrence, in order)."""

    def __init__(self, pos: Pos, items=()):
        super().__init__(items)
        self.pos = pos
        self.end: Pos | None = None  # where its closing brace is
        self.key_pos: dict = {}
        self.value_pos: dict = {}

    def like(self, items=()) -> Message:
        """A new message at this one's place, keeping the positions of the fields it shares with this one."""
        other = Message(self.pos, items)
        other.key_pos, other.value_pos, other.end = dict(self.key_pos), dict(self.value_pos), self.end
        return other

    def where(self, key) -> Pos:
        """The position of a field's (first) key, or of the message when it lacks the field."""
        return (self.key_pos.get(key) or [self.pos])[0]

    def add(self, key, value, key_pos: Pos, value_pos: Pos):
        if key in self:
            existing = self[key]
            if isinstance(existing, list):
                existing.append(value)  # in place: a field written 100,000 times must not take quadratic time
            else:
                self[key] = [existing, value]
        else:
            self[key] = value
        self.key_pos.setdefault(key, []).append(key_pos)
        self.value_pos.setdefault(key, []).append(value_pos)

    def rename(self, old, new):
        """Field `old` as `new` (at the end), with its positions."""
        self[new] = self.pop(old)
        self.key_pos[new], self.value_pos[new] = self.key_pos.pop(old, []), self.value_pos.pop(old, [])

    def put(self, key, value, at):
        """Set a field made by a conversion, placed where the field `at` was written."""
        self[key] = value
        self.key_pos[key] = self.value_pos[key] = [self.where(at)]


class _Tokens:
    """The tokens of prototxt text, scanned as the parser asks for them: a syntax error early in a large
    file (a brace 20,000 deep) is reported without scanning the rest."""

    def __init__(self, text: str, file: str):
        self.text, self.file, self.comments = text, file, []
        self.end = Pos(file, text.count("\n") + 1, len(text) - (text.rfind("\n") + 1) + 1)
        self._scanner, self._next = self._scan(), None

    def _scan(self):
        text, position, line, line_start = self.text, 0, 1, 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            pos = Pos(self.file, line, position - line_start + 1)
            if match is None:
                raise NetdefError(Problem(f"unexpected character {text[position]!r} in prototxt", pos,
                                          hint="a .prototxt file is Caffe's protobuf text format"))
            if match.lastgroup == "comment":
                self.comments.append((pos, match.group()[1:].strip()))
            elif match.lastgroup != "space":
                yield match.lastgroup, match.group(), pos
            elif "\n" in match.group():  # only white space spans lines
                line += match.group().count("\n")
                line_start = position + match.group().rfind("\n") + 1
            position = match.end()

    def peek(self):
        if self._next is None:
            self._next = next(self._scanner, (None, None, self.end))
        return self._next

    def take(self, expected=None):
        kind, text, pos = self.peek()
        if kind is None or (expected is not None and text not in expected):
            wanted = " or ".join(repr(e) for e in expected) if expected else "a value"
            raise NetdefError(Problem("prototxt syntax error", pos, expected=wanted,
                                      found=repr(text) if text else "the end of the file"))
        self._next = None
        return kind, text, pos


def _scalar(tokens: _Tokens):
    kind, text, pos = tokens.take()
    if kind == "string":
        parts = [text]
        while tokens.peek()[0] == "string":
            parts.append(tokens.take()[1])
        try:
            return "".join(ast.literal_eval(part) for part in parts)
        except (ValueError, SyntaxError):
            raise NetdefError(Problem("invalid escape in a prototxt string", pos, found=text)) from None
    if kind == "number":
        if re.fullmatch(r"[-+]?\d+", text):
            return int(text)
        if "x" in text.lower():
            return int(text, 16)
        return float(text.rstrip("fF"))
    if kind == "name":
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        return _SPECIAL_FLOATS.get(text.lower(), text)
    raise NetdefError(Problem("prototxt syntax error", pos, expected="a value", found=repr(text)))


def _value(tokens: _Tokens, after_colon: bool, key_pos: Pos, depth: int):
    """[(value, its position)] of one field: one entry, or one per item of a `[...]` list."""
    text, pos = tokens.peek()[1], tokens.peek()[2]
    if text in _CLOSING:
        tokens.take()
        return [(_message(tokens, _CLOSING[text], key_pos, depth + 1), pos)]
    if after_colon and text == "[":
        if depth > MAX_NESTING:
            raise NetdefError(Problem(f"lists nested more than {MAX_NESTING} deep", pos))
        tokens.take()
        items = []
        while tokens.peek()[1] != "]":
            items += _value(tokens, True, tokens.peek()[2], depth + 1)
            if tokens.peek()[1] == ",":
                tokens.take()
        tokens.take("]")
        return items
    if not after_colon:
        tokens.take([":", "{", "<"])
    return [(_scalar(tokens), pos)]


def _message(tokens: _Tokens, closing: str | None, pos: Pos, depth: int = 0) -> Message:
    if depth > MAX_NESTING:
        raise NetdefError(Problem(f"messages nested more than {MAX_NESTING} deep", pos))
    message = Message(pos)
    while True:
        kind, text, pos = tokens.peek()
        if text == closing or (kind is None and closing is None):
            if kind is not None:
                tokens.take()
            message.end = pos
            return message
        if kind != "name":
            raise NetdefError(Problem("prototxt syntax error", pos, expected="a field name" +
                                      (f" or {closing!r}" if closing else ""),
                                      found=repr(text) if text else "the end of the file"))
        tokens.take()
        colon = tokens.peek()[1] == ":"
        if colon:
            tokens.take()
        values = _value(tokens, colon, pos, depth)
        for value, value_pos in values:
            message.add(text, value, pos, value_pos)
        if len(values) != 1:  # `[...]`: a list even with one item (or none)
            message[text] = as_list(message.get(text, []))
            message.key_pos.setdefault(text, [pos])
        if tokens.peek()[1] in (",", ";"):
            tokens.take()


def parse_prototxt(text: str, file: str = "<string>") -> Message:
    """A protobuf text message as a dict (a Message); a field written more than once (or as `[...]`) is a
    list. Its `comments` are [(Pos, text)] of every `#` comment."""
    tokens = _Tokens(text, file)
    message = _message(tokens, None, Pos(file, 1, 1))
    message.comments = tokens.comments
    return message


# ---------------------------------------------------------------- nets

def _listify(block: Message, fields: dict, compact: bool) -> Message:
    """Repeated Caffe fields (per netdef's field tables) as lists, nested blocks alike; with `compact`,
    a one-element repeated field as its plain value instead (netdef accepts either)."""
    out = block.like()
    for key, value in block.items():
        field = fields.get(key)
        if field is None:
            out[key] = value
        elif field.list_of and field.kind != "block":
            # A repeated message of repeated values (connection_table rows): each row a list.
            out[key] = [as_list(row.get("value", row) if isinstance(row, dict) else row) for row in as_list(value)]
        elif field.repeated or field.list_of:
            items = [_listify(item, field.fields, compact) if field.kind == "block" and isinstance(item, Message)
                     else item for item in as_list(value)]
            out[key] = items[0] if compact and field.repeated and len(items) == 1 else items
        elif field.kind == "block" and isinstance(value, Message):
            out[key] = _listify(value, field.fields, compact)
        else:
            out[key] = value
    return out


def _layer(raw: Message, compact: bool) -> Message:
    from ..front.schema import layer_fields
    from ..layers import LAYERS
    from .upgrade import apply_caffe_defaults, upgrade_fork_fields
    cls = LAYERS.get(raw.get("type")) if isinstance(raw, Message) and isinstance(raw.get("type"), str) else None
    if cls is None:
        return raw  # not a layer of a known type (`type` twice is a list): left for `netdef check` to report
    return _listify(apply_caffe_defaults(upgrade_fork_fields(raw, cls), cls), layer_fields(cls), compact)


def _legacy_input_layer(net: Message) -> Message | None:
    """Caffe's deprecated net-level inputs as the Input layer Caffe's upgrade makes of them."""
    if "input" not in net:
        for stray in ("input_shape", "input_dim"):
            if stray in net:
                raise NetdefError(Problem(f"'{stray}' without 'input'", net.where(stray),
                                          expected="the input blob names in 'input'"))
        return None
    layer = Message(net.where("input"))
    layer.put("name", "input", "input")
    layer.put("type", "Input", "input")
    layer.put("top", as_list(net.pop("input")), "input")
    shapes = [{"dim": as_list(s.get("dim"))} for s in as_list(net.pop("input_shape", None))]
    dims = as_list(net.get("input_dim"))
    if dims:
        if len(dims) != 4 * len(layer["top"]):
            raise NetdefError(Problem("'input_dim' needs four values per 'input'", net.where("input_dim"),
                                      expected=f"{4 * len(layer['top'])} values", found=str(len(dims))))
        shapes = [{"dim": dims[4 * i:4 * i + 4]} for i in range(len(layer["top"]))]
    net.pop("input_dim", None)
    layer.put("input_param", {"shape": shapes}, "name")
    return layer


def convert_net(net: Message, compact: bool = False) -> Message:
    """A parsed Caffe NetParameter as a netdef net document: V0/V1 upgraded, `layer` -> `layers`,
    repeated fields as lists (with `compact`, one-element ones as plain values, as a person writes them)."""
    from .upgrade import upgrade_v1_net
    net = upgrade_v1_net(net)
    out = net.like()
    out.clear()
    if "name" in net:
        out["name"] = net.pop("name")
    inputs = _legacy_input_layer(net)
    layers = [_layer(raw, compact) for raw in as_list(net.pop("layer", None))]
    out["layers"] = ([inputs] if inputs else []) + layers
    out.key_pos["layers"] = net.key_pos.get("layer") or ([inputs.pos] if inputs else [net.pos])
    for key, value in net.items():  # anything else (force_backward, state, ...) is kept for `netdef check`
        out[key] = value
    return out


def convert_solver(solver: Message, compact: bool = False) -> Message:
    """A parsed Caffe SolverParameter as a netdef solver document: its fields as they are (netdef's solver
    fields are Caffe's), its inline nets converted, its repeated NetStates as lists."""
    out = solver.like(solver)
    for key in INLINE_NETS:
        if key in out:
            nets = [convert_net(net, compact) if isinstance(net, Message) else net for net in as_list(out[key])]
            out[key] = nets if key == "test_net_param" else nets[0]
    if "test_state" in out:
        out["test_state"] = as_list(out["test_state"])
    return out


def is_solver(document: dict) -> bool:
    """Whether a parsed prototxt is a SolverParameter (Caffe's tools know from the command; netdef looks)."""
    return not any(key in document for key in NET_MARKS) and any(key in document for key in SOLVER_MARKS)


def convert(document: Message, compact: bool = False) -> Message:
    """A parsed prototxt as the netdef document it stands for: a solver or a net."""
    return (convert_solver if is_solver(document) else convert_net)(document, compact)


def _record(source: Source, value, path: tuple, pos: Pos):
    """Enter the positions of a converted document into `source`, as the YAML loader does."""
    source.values[path] = getattr(value, "pos", pos)
    if isinstance(value, dict):
        for key, item in value.items():
            key_pos = getattr(value, "key_pos", {}).get(key) or [source.values[path]]
            value_pos = getattr(value, "value_pos", {}).get(key) or key_pos
            source.keys[path + (key,)] = key_pos[0]
            if isinstance(item, list):
                source.values[path + (key,)] = key_pos[0]
                for index, element in enumerate(item):
                    _record(source, element, path + (key, index), value_pos[min(index, len(value_pos) - 1)])
            else:
                _record(source, item, path + (key,), value_pos[0])
    elif isinstance(value, list):
        for index, element in enumerate(value):
            _record(source, element, path + (index,), pos)


def plain(value):
    """A converted document as plain dicts and lists (what YAML loading gives)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def read_prototxt(text: str, file: str = "<string>") -> tuple:
    """Parse and convert prototxt text; returns (data, Source) as netdef.front.load.load_yaml_text does."""
    if not text.strip("\ufeff \t\r\n"):
        raise NetdefError(Problem("the file is empty", Pos(file, 1, 1)))
    document = convert(parse_prototxt(text, file))
    source = Source(file)
    _record(source, document, (), Pos(file, 1, 1))
    data = plain(document)
    return (caffe_rooted_paths(data, Path(file).parent) if file != "<string>" else data), source


def caffe_rooted_paths(document: dict, folder: Path) -> dict:
    """A converted document of a file in `folder` whose relative paths that Caffe would find from its root
    (a folder above) are written relative to `folder`, as netdef reads them: the data paths of a net (and of
    a solver's inline nets), a solver's snapshot prefix. Positions stay those of the values as written."""
    from ..front.expand import layers_with_paths_moved
    from ..paths import caffe_path_mover, caffe_prefix_mover
    solver = is_solver(document)
    nets = [net for key in INLINE_NETS for net in as_list(document.get(key))] if solver else [document]
    for net in nets:
        if isinstance(net, dict) and isinstance(net.get("layers"), list):
            net["layers"] = layers_with_paths_moved(net["layers"], caffe_path_mover(folder, folder))
    if solver and "snapshot_prefix" in document:
        document["snapshot_prefix"] = caffe_prefix_mover(folder, folder)(document["snapshot_prefix"])
    return document


def net_from_prototxt(text: str, file: str = "<string>", compact: bool = False) -> dict:
    """A Caffe NetParameter (prototxt text) as a plain netdef net dict."""
    return plain(convert_net(parse_prototxt(text, file), compact))


def read_prototxt_file(path) -> Message:
    """The parsed (not yet converted) message of a .prototxt file."""
    from ..front.load import read_text
    return parse_prototxt(read_text(path), str(path))


def load_prototxt(path, compact: bool = False) -> dict:
    """Read a .prototxt net or solver file as a plain netdef document."""
    return plain(convert(read_prototxt_file(path), compact))
