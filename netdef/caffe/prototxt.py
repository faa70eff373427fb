"""Caffe's protobuf text format (.prototxt) read into the dicts netdef's YAML files hold.

Without caffe.proto at hand the parser cannot know which fields are `repeated`: a field written more
than once becomes a list, and `net_from_prototxt` then uses netdef's own field tables (the layer
classes) to turn every repeated Caffe field into a list, `layer` into `layers`, and Caffe's deprecated
net-level `input`/`input_shape`/`input_dim` into an Input layer (as Caffe's UpgradeNetInput does).

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

_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[fF]?(?![\w.]))
  | (?P<name>-?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}<>\[\]:,;])
""", re.X)

_CLOSING = {"{": "}", "<": ">"}
_TRUE, _FALSE = {"true", "True", "t"}, {"false", "False", "f"}
_SPECIAL_FLOATS = {"inf": float("inf"), "infinity": float("inf"), "-inf": float("-inf"),
                   "-infinity": float("-inf"), "nan": float("nan")}


class _Tokens:
    def __init__(self, text: str, file: str):
        self.items, self.index = [], 0
        line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
        position, line = 0, 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            while line + 1 < len(line_starts) and line_starts[line + 1] <= position:
                line += 1
            pos = Pos(file, line + 1, position - line_starts[line] + 1)
            if match is None:
                raise NetdefError(Problem(f"unexpected character {text[position]!r} in prototxt", pos))
            if match.lastgroup != "space":
                self.items.append((match.lastgroup, match.group(), pos))
            position = match.end()
        self.end = Pos(file, len(line_starts), len(text) - line_starts[-1] + 1)

    def peek(self):
        return self.items[self.index] if self.index < len(self.items) else (None, None, self.end)

    def take(self, expected=None):
        kind, text, pos = self.peek()
        if kind is None or (expected is not None and text not in expected):
            wanted = " or ".join(repr(e) for e in expected) if expected else "a value"
            raise NetdefError(Problem("prototxt syntax error", pos, expected=wanted,
                                      found=repr(text) if text else "the end of the file"))
        self.index += 1
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


def _add(message: dict, key: str, value):
    if key in message:
        existing = message[key]
        message[key] = existing + [value] if isinstance(existing, list) else [existing, value]
    else:
        message[key] = value


def _value(tokens: _Tokens, after_colon: bool):
    text = tokens.peek()[1]
    if text in _CLOSING:
        tokens.take()
        return _message(tokens, _CLOSING[text])
    if after_colon and text == "[":
        tokens.take()
        items = []
        while tokens.peek()[1] != "]":
            items.append(_value(tokens, after_colon=True))
            if tokens.peek()[1] == ",":
                tokens.take()
        tokens.take("]")
        return items
    if not after_colon:
        tokens.take([":", "{", "<"])
    return _scalar(tokens)


def _message(tokens: _Tokens, closing: str | None) -> dict:
    message: dict = {}
    while True:
        kind, text, pos = tokens.peek()
        if text == closing or (kind is None and closing is None):
            if kind is not None:
                tokens.take()
            return message
        if kind != "name":
            raise NetdefError(Problem("prototxt syntax error", pos, expected="a field name" +
                                      (f" or {closing!r}" if closing else ""),
                                      found=repr(text) if text else "the end of the file"))
        tokens.take()
        colon = tokens.peek()[1] == ":"
        if colon:
            tokens.take()
        value = _value(tokens, after_colon=colon)
        if isinstance(value, list):
            for item in value:
                _add(message, text, item)
            message.setdefault(text, [])
            if not isinstance(message[text], list):
                message[text] = [message[text]]
        else:
            _add(message, text, value)
        if tokens.peek()[1] in (",", ";"):
            tokens.take()


def parse_prototxt(text: str, file: str = "<string>") -> dict:
    """A protobuf text message as a dict; a field written more than once (or as `[...]`) is a list."""
    return _message(_Tokens(text, file), None)


def _listify(block: dict, fields: dict, compact: bool) -> dict:
    """Repeated Caffe fields (per netdef's field tables) as lists, nested blocks alike; with `compact`,
    a one-element repeated field as its plain value instead (netdef accepts either)."""
    out = {}
    for key, value in block.items():
        field = fields.get(key)
        if field is None:
            out[key] = value
        elif field.list_of and field.kind != "block":
            # A repeated message of repeated values (connection_table rows): each row a list.
            out[key] = [as_list(row) for row in as_list(value)]
        elif field.repeated or field.list_of:
            items = [_listify(item, field.fields, compact) if field.kind == "block" and isinstance(item, dict)
                     else item for item in as_list(value)]
            out[key] = items[0] if compact and field.repeated and len(items) == 1 else items
        elif field.kind == "block" and isinstance(value, dict):
            out[key] = _listify(value, field.fields, compact)
        else:
            out[key] = value
    return out


def _layer(raw: dict, compact: bool) -> dict:
    from ..layers import LAYERS
    from ..front.schema import layer_fields
    cls = LAYERS.get(raw.get("type"))
    if cls is None:
        return dict(raw)  # an unknown type: left for `netdef check` to report with a hint
    return _listify(raw, layer_fields(cls), compact)


def _legacy_input_layer(net: dict, file: str) -> dict | None:
    """Caffe's deprecated net-level inputs as the Input layer Caffe's upgrade makes of them."""
    names = as_list(net.pop("input", None))
    shapes = [{"dim": as_list(s.get("dim"))} for s in as_list(net.pop("input_shape", None))]
    dims = as_list(net.pop("input_dim", None))
    if not names:
        return None
    if dims:
        if len(dims) != 4 * len(names):
            raise NetdefError(Problem("'input_dim' needs four values per 'input'", Pos(file, 1, 1),
                                      expected=f"{4 * len(names)} values", found=str(len(dims))))
        shapes = [{"dim": dims[4 * i:4 * i + 4]} for i in range(len(names))]
    return {"name": "input", "type": "Input", "top": names, "input_param": {"shape": shapes}}


def net_from_prototxt(text: str, file: str = "<string>", compact: bool = False) -> dict:
    """A Caffe NetParameter (prototxt text) as a netdef net dict: `layer` -> `layers`, repeated fields as
    lists (with `compact`, one-element ones as plain values, as a person writes them)."""
    net = parse_prototxt(text, file)
    if "layers" in net:
        raise NetdefError(Problem("this is Caffe's legacy V1 net format ('layers' with enum types)", Pos(file, 1, 1),
                                  hint="upgrade it first with Caffe's upgrade_net_proto_text"))
    out = {"name": net.pop("name")} if "name" in net else {}
    inputs = _legacy_input_layer(net, file)
    layers = [_layer(raw, compact) for raw in as_list(net.pop("layer", None))]
    out["layers"] = ([inputs] if inputs else []) + layers
    out.update(net)  # anything else (force_backward, state, ...) is kept for `netdef check` to judge
    return out


def load_prototxt(path, compact: bool = False) -> dict:
    """Read a .prototxt net file as a netdef net dict."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NetdefError(Problem(f"cannot read {path}: {exc.strerror or exc}")) from None
    return net_from_prototxt(text, str(path), compact)
