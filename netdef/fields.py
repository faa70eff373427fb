"""Typed parameter fields: each carries its default, its constraint and its one-line doc.

Layer classes declare their Caffe parameter blocks as tables of these fields; the JSON Schema, the
defaults and the README's field lists are all derived from the same tables.
"""
from __future__ import annotations

import copy

# A value written as a block template, e.g. "${mid * 4}", is only legal inside block definitions.
TEMPLATE = {"type": "string", "pattern": r"^\$\{.*\}$"}

_JSON_TYPES = {"int": "integer", "float": "number", "bool": "boolean", "str": "string"}


class Field:
    """One parameter: `kind` is int, float, bool, str, enum or block (a nested table of fields)."""

    def __init__(self, kind, default=None, doc="", *, required=False, minimum=None, maximum=None,
                 exclusive_minimum=None, choices=None, repeated=False, fields=None, list_of=False, ref=None,
                 path=False):
        self.kind = kind
        self.default = default
        self.doc = doc
        self.required = required
        self.minimum = minimum
        self.maximum = maximum
        self.exclusive_minimum = exclusive_minimum
        self.choices = tuple(choices) if choices else None
        self.repeated = repeated  # Caffe `repeated`: one value or a list; normalised to a list
        self.fields = fields  # for kind == "block"
        self.list_of = list_of  # a list of blocks (Caffe's repeated messages)
        self.ref = ref  # a block used in many places (fillers): defined once under this $defs name
        self.path = path  # a file or folder relative to the net file (`netdef expand -o` rebases it)

    def _scalar_schema(self, templates, defs):
        if self.kind == "block":
            schema = block_schema(self.fields, templates, defs)
            if self.ref and defs is not None:
                schema = {"$ref": "#/$defs/" + _define(defs, self.ref, schema)}
        elif self.kind == "enum":
            schema = {"enum": list(self.choices)}
        else:
            schema = {"type": _JSON_TYPES[self.kind]}
            for keyword, value in (("minimum", self.minimum), ("maximum", self.maximum),
                                   ("exclusiveMinimum", self.exclusive_minimum)):
                if value is not None:
                    schema[keyword] = value
        if templates and self.kind != "block":
            schema = {"anyOf": [schema, _template(defs)]}
        return schema

    def must_be_given(self) -> bool:
        """Required, or a block without a default that holds a required field (InnerProduct without its
        inner_product_param has no num_output)."""
        if self.required:
            return True
        return self.kind == "block" and self.default is None and not self.repeated \
            and any(f.must_be_given() for f in self.fields.values())

    def schema(self, templates=False, defs=None) -> dict:
        """The field's JSON Schema. With `defs` (a dict), shared blocks are filed there and referenced."""
        item = self._scalar_schema(templates, defs)
        if self.list_of:
            row = {"type": "array", "items": item} if self.repeated else item
            schema = {"type": "array", "items": row}
        elif self.repeated:
            if templates:
                schema = {"anyOf": [item, {"type": "array", "items": item}]}
            else:
                schema = {**item, "type": [item.get("type", "string"), "array"], "items": item}
                if self.kind == "enum" or "$ref" in item:
                    schema = {"anyOf": [item, {"type": "array", "items": item}]}
        else:
            schema = dict(item)
        if templates and (self.kind == "block" or self.list_of):
            # A whole mapping or list may come from a block argument: `connection_table: ${table}`.
            schema = {"anyOf": [schema, _template(defs)]}
        if self.doc:
            schema["description"] = self.doc
        if self.default is not None and self.kind != "block":
            schema["default"] = self.default
        return schema

    def value_or_default(self, given):
        if given is None:
            if self.kind == "block" and not (self.list_of or self.repeated):
                return apply_defaults(self.fields, self.default or {})
            if self.repeated or self.list_of:
                return copy.deepcopy(self.default) if self.default is not None else []
            return copy.deepcopy(self.default)
        if self.list_of and self.kind != "block":
            return given
        if self.kind == "block":
            if self.list_of or self.repeated:
                items = as_list(given)
                return [apply_defaults(self.fields, item) for item in items]
            return apply_defaults(self.fields, given)
        if self.repeated and not isinstance(given, list):
            return [given]
        if self.kind == "float" and isinstance(given, int) and not isinstance(given, bool):
            return float(given)
        return given


def block_schema(fields: dict, templates=False, defs=None) -> dict:
    """A closed JSON Schema object for a table of fields (unknown keys are errors)."""
    schema = {"type": "object",
              "properties": {name: f.schema(templates, defs) for name, f in fields.items()},
              "additionalProperties": False}
    required = [name for name, f in fields.items() if f.must_be_given()]
    if required:
        schema["required"] = required
    return schema


def _template(defs):
    """The schema of a template value, referenced from `defs` when shared definitions are collected."""
    return TEMPLATE if defs is None else shared_ref(defs, "template", TEMPLATE)


def shared_ref(defs: dict, name: str, schema: dict) -> dict:
    """A reference to `schema`, filed once in the shared definitions `defs` (see _define)."""
    return {"$ref": "#/$defs/" + _define(defs, name, schema)}


def _define(defs: dict, name: str, schema: dict) -> str:
    """File `schema` in `defs` under `name`, or name_2, name_3, ... when a different schema holds the name
    (a filler with another default value); returns the key."""
    key, n = name, 1
    while key in defs and defs[key] != schema:
        n += 1
        key = f"{name}_{n}"
    defs[key] = schema
    return key


def as_list(value) -> list:
    """A Caffe repeated field as written (absent, one value or a list) as a new list."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def apply_defaults(fields: dict, given: dict) -> dict:
    """The block `given` with every absent field set to its default."""
    return {name: f.value_or_default(given.get(name)) for name, f in fields.items()}


def Int(default=None, doc="", **kw):
    return Field("int", default, doc, **kw)


def Float(default=None, doc="", **kw):
    return Field("float", default, doc, **kw)


def Bool(default=None, doc="", **kw):
    return Field("bool", default, doc, **kw)


def Str(default=None, doc="", **kw):
    return Field("str", default, doc, **kw)


def Enum(choices, default=None, doc="", **kw):
    return Field("enum", default, doc, choices=choices, **kw)


def Block(fields, doc="", default=None, **kw):
    return Field("block", default, doc, fields=fields, **kw)


def File(default=None, doc="", **kw):
    """A str field naming a file or folder relative to the net file."""
    return Field("str", default, doc, path=True, **kw)


def rebase_paths(fields: dict, values: dict, move) -> dict:
    """`values` (a parameter block as written) with every path field's value passed through `move`, nested
    blocks included; the other values as they are."""
    rebased = dict(values)
    for name, value in values.items():
        spec = fields.get(name)
        if spec is None or value is None:
            continue
        if spec.path:
            rebased[name] = [move(v) for v in value] if isinstance(value, list) else move(value)
        elif spec.kind == "block" and spec.fields:
            nested = value if isinstance(value, list) else [value]
            moved = [rebase_paths(spec.fields, v, move) if isinstance(v, dict) else v for v in nested]
            rebased[name] = moved if isinstance(value, list) else moved[0]
    return rebased
