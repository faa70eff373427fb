"""Stage 2, validate: check a loaded net or solver against its JSON Schema, with positioned messages.

jsonschema's raw messages (and its "is not valid under any of the given schemas") never reach the user:
each error is turned into a Problem that says what was expected and what was found, at the YAML line.
"""
from __future__ import annotations

from functools import lru_cache

from jsonschema import Draft202012Validator

from ..errors import NetdefError, Problem, close_matches, did_you_mean, show
from ..layers import LAYERS
from .load import Origin
from .schema import layer_fields, layer_schema, net_schema, use_schema

_TYPE_NAMES = {"integer": "an integer", "number": "a number", "boolean": "true or false",
               "string": "a string", "object": "a mapping", "array": "a list", "null": "null"}

_USE_AN_INPUT_LAYER = ("netdef declares net inputs with an Input layer: "
                       "{name: data, type: Input, top: data, input_param: {shape: {dim: [N, C, H, W]}}}")
# Keys a Caffe user (or a block author) writes where netdef does not take them: what to do instead.
_MISPLACED_KEY_HINTS = {
    "input": _USE_AN_INPUT_LAYER, "input_dim": _USE_AN_INPUT_LAYER, "input_shape": _USE_AN_INPUT_LAYER,
    "if": "'if' only works on layers inside a block",
}


@lru_cache(maxsize=None)
def _validator(kind: str, templates: bool):
    if kind == "use":
        schema = use_schema(templates)
    elif kind == "document":
        schema = dict(net_schema())
        # Entries are checked one by one (see layer_problems), with better messages than a dispatch gives.
        schema["properties"] = {**schema["properties"], "layers": {"type": "array"}}
        schema["$defs"] = {**schema["$defs"], "block": {
            **schema["$defs"]["block"],
            "properties": {**schema["$defs"]["block"]["properties"], "layers": {"type": "array"}}}}
    else:
        schema = layer_schema(LAYERS[kind], templates)
    return Draft202012Validator(schema)


def _expected(schema) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    item_kind = schema.get("items", {}).get("type")
    names = [f"a list of {item_kind}s" if k == "array" and isinstance(item_kind, str) and item_kind != "object"
             else _TYPE_NAMES.get(k, str(k)) for k in kinds if k]
    return " or ".join(names)


def _leaf(error):
    """For anyOf/oneOf, the branch error that best explains the problem (never the template branch)."""
    while error.validator in ("anyOf", "oneOf") and error.context:
        candidates = [e for e in error.context if e.validator != "pattern"]
        if not candidates:
            break
        error = max(candidates, key=lambda e: len(e.absolute_path))
    return error


def _field_label(path) -> str:
    """The name a value is known by: 'num_output', 'kernel_size[1]' for a list item, 'weight_filler.type'
    inside a nested block (a parameter block's own name is left out: the layer is named anyway)."""
    names, indices = [], ""
    for part in path:
        if isinstance(part, int):
            indices += f"[{part}]"
        else:
            names, indices = names + [str(part)], ""
    if not names:
        return "value" + indices
    if len(names) >= 2 and not names[-2].endswith("_param") and names[-2] != "layers":
        return f"{names[-2]}.{names[-1]}{indices}"
    return names[-1] + indices


def schema_problems(validator, instance, origin: Origin, layer=None, layer_type=None) -> list:
    """Every schema violation of `instance` as a positioned Problem."""
    errors = [_leaf(error) for error in validator.iter_errors(instance)]
    # A value of the wrong type is not also reported as out of range (0.5 for an integer >= 1).
    mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    problems = []
    for error in errors:
        if error.validator == "type" or tuple(error.absolute_path) not in mistyped:
            problems.extend(_describe(error, origin, layer, layer_type))
    return problems


def _key_places(fields: dict, prefix=()):
    """(key, path of the mapping that takes it) for every key of a field table, nested blocks included."""
    for key, field in fields.items():
        yield key, prefix
        if field.kind == "block":
            yield from _key_places(field.fields, prefix + (key,))


def _place(path) -> str:
    return f"under '{'.'.join(map(str, path))}'" if path else "at the layer level"


def _unknown_key_hint(key, path, known, layer_type) -> str | None:
    """Where an unknown key belongs, or what it may be a misspelling of. Inside a layer every key of the
    layer type is considered, not just the keys of the mapping it was written in."""
    if key in _MISPLACED_KEY_HINTS:
        return _MISPLACED_KEY_HINTS[key]
    if layer_type in LAYERS:
        places = [(k, p) for k, p in _key_places(layer_fields(LAYERS[layer_type])) if p != path]
        exact = sorted(dict.fromkeys(p for k, p in places if k == key), key=len)  # shallowest, then in order
        if exact:
            return f"'{key}' belongs " + " or ".join(_place(p) for p in exact[:2])
        owners = sorted(name for name, cls in LAYERS.items() if key in cls.blocks)
        if owners:
            takes = ", ".join(f"'{block}'" for block in LAYERS[layer_type].blocks) or "no parameter block"
            return f"'{key}' is for {', '.join(owners)} layers; a {layer_type} layer takes {takes}"
    hint = did_you_mean(key, known)
    if hint or layer_type not in LAYERS:
        return hint
    elsewhere = {}
    for k, p in places:
        elsewhere.setdefault(k, p)
    matches = close_matches(key, elsewhere)
    if matches:
        return "did you mean " + " or ".join(f"'{m}' ({_place(elsewhere[m])})" for m in matches) + "?"
    return None


def _type_hint(instance, expected_types) -> str | None:
    """Why YAML may have produced a value of the wrong type."""
    if isinstance(instance, str) and "${" in instance:
        return "templates (${...}) only work inside a block (see 'blocks:')"
    if isinstance(instance, bool) and "string" in expected_types:
        return "YAML reads unquoted yes/no/on/off/true/false as booleans: write the name in quotes"
    if isinstance(instance, str) and expected_types & {"integer", "number"}:
        try:
            float(instance)
        except ValueError:
            return None
        return "remove the quotes to make it a number"
    return None


def _describe(error, origin: Origin, layer, layer_type):
    path = tuple(error.absolute_path)
    where = dict(layer=layer, layer_type=layer_type, via=origin.via)
    v = error.validator
    if v == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        block = f" in {path[-1]}" if path and isinstance(path[-1], str) else ""
        for key in error.instance:
            if key not in known:
                yield Problem(f"unknown key '{key}'{block}", origin.pos(path + (key,), key=True),
                              hint=_unknown_key_hint(key, _mapping_path(path), known, layer_type), **where)
    elif v == "required":
        for key in error.validator_value:
            if key not in error.instance:
                block = f" in {path[-1]}" if path and isinstance(path[-1], str) else ""
                yield Problem(f"missing required key '{key}'{block}", origin.pos(path), **where)
    elif v in ("type", "enum", "const"):
        kinds = error.schema.get("type", [])
        kinds = set(kinds if isinstance(kinds, list) else [kinds])
        hint = did_you_mean(error.instance, error.schema.get("enum", [])) if v == "enum" else None
        hint = hint or _type_hint(error.instance, kinds)
        yield Problem(f"invalid value for '{_field_label(path)}'", origin.pos(path),
                      expected=_expected(error.schema), found=show(error.instance), hint=hint, **where)
    elif v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        sign = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[v]
        yield Problem(f"'{_field_label(path)}' is out of range", origin.pos(path),
                      expected=f"{sign} {error.validator_value}", found=show(error.instance), **where)
    else:
        yield Problem(f"invalid '{_field_label(path)}': {error.message}", origin.pos(path), **where)


def _mapping_path(path) -> tuple:
    """The path of a mapping without list indices: ('param', 0) -> ('param',)."""
    return tuple(p for p in path if not isinstance(p, int))


def layer_problems(entry, origin: Origin, templates: bool) -> list:
    """Schema problems of one `layers:` entry: a layer of a known type, or a block instance (`use:`).
    `templates`: whether "${...}" values are allowed (inside block definitions). An instance's name,
    `with` and `repeat` may always use them (`name: stage${letter}`)."""
    if not isinstance(entry, dict):
        return [Problem("a layer must be a mapping", origin.pos(), expected="a mapping with 'name' and 'type'",
                        found=show(entry), via=origin.via)]
    name = entry.get("name") if isinstance(entry.get("name"), str) else None
    if "use" in entry:
        return schema_problems(_validator("use", True), entry, origin, layer=name)
    kind = entry.get("type")
    if not isinstance(kind, str) or kind not in LAYERS:
        if "type" not in entry:
            return [Problem("missing required key 'type'", origin.pos(), layer=name, via=origin.via,
                            hint="every layer needs a 'type' (or 'use' for a block instance)")]
        return [Problem(f"unknown layer type {show(kind)}", origin.pos(("type",)), layer=name,
                        hint=did_you_mean(kind, LAYERS), via=origin.via)]
    return schema_problems(_validator(kind, templates), entry, origin, layer=name, layer_type=kind)


def validate_document(data, source) -> None:
    """Check a whole net file before block expansion; raises NetdefError with all problems found."""
    root = Origin(source, ())
    if not isinstance(data, dict):
        # The kind of value only, never its text: the file may be one that is not a net at all (/etc/passwd).
        found = {str: "text", list: "a list", type(None): "nothing"}.get(type(data), "a single value")
        raise NetdefError(Problem("a net file must be a mapping with 'name' and 'layers'", root.pos(), found=found))
    problems = schema_problems(_validator("document", True), data, root)
    for prefix, entries in _entry_lists(data):
        in_block = prefix[0] == "blocks"
        for i, entry in enumerate(entries):
            problems += layer_problems(entry, Origin(source, prefix + (i,)), templates=in_block)
    if problems:
        raise NetdefError(problems)


def _entry_lists(data):
    if isinstance(data.get("layers"), list):
        yield ("layers",), data["layers"]
    blocks = data.get("blocks")
    for block_name, block in (blocks.items() if isinstance(blocks, dict) else ()):
        if isinstance(block, dict) and isinstance(block.get("layers"), list):
            yield ("blocks", block_name, "layers"), block["layers"]
