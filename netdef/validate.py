"""Stage 2, validate: check a loaded net or solver against its JSON Schema, with positioned messages.

jsonschema's raw messages (and its "is not valid under any of the given schemas") never reach the user:
each error is turned into a Problem that says what was expected and what was found, at the YAML line.
"""
from __future__ import annotations

from functools import lru_cache

from jsonschema import Draft202012Validator

from .errors import NetdefError, Problem, did_you_mean, show
from .layers import LAYERS
from .load import Origin
from .schema import layer_schema, net_schema, use_schema

_TYPE_NAMES = {"integer": "an integer", "number": "a number", "boolean": "true or false",
               "string": "a string", "object": "a mapping", "array": "a list", "null": "null"}


@lru_cache(maxsize=None)
def _validator(kind: str, templates: bool):
    if kind == "use":
        schema = use_schema(templates)
    elif kind == "document":
        schema = dict(net_schema())
        # Entries are checked one by one (see layer_problems), with better messages than a dispatch gives.
        schema["properties"] = {**schema["properties"], "layers": {"type": "array", "items": {"type": "object"}}}
        schema["$defs"] = {**schema["$defs"], "block": {
            **schema["$defs"]["block"],
            "properties": {**schema["$defs"]["block"]["properties"],
                           "layers": {"type": "array", "items": {"type": "object"}}}}}
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
    return " or ".join(_TYPE_NAMES.get(k, str(k)) for k in kinds if k)


def _leaf(error):
    """For anyOf/oneOf, the branch error that best explains the problem (never the template branch)."""
    while error.validator in ("anyOf", "oneOf") and error.context:
        candidates = [e for e in error.context if e.validator != "pattern"]
        if not candidates:
            break
        error = max(candidates, key=lambda e: len(e.absolute_path))
    return error


def _field_label(path) -> str:
    names = [str(p) for p in path if not isinstance(p, int)]
    return names[-1] if names else "value"


def schema_problems(validator, instance, origin: Origin, layer=None, layer_type=None) -> list:
    """Every schema violation of `instance` as a positioned Problem."""
    problems = []
    for error in validator.iter_errors(instance):
        problems.extend(_describe(_leaf(error), origin, layer, layer_type))
    return problems


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
                              hint=did_you_mean(key, known), **where)
    elif v == "required":
        for key in error.validator_value:
            if key not in error.instance:
                block = f" in {path[-1]}" if path and isinstance(path[-1], str) else ""
                yield Problem(f"missing required key '{key}'{block}", origin.pos(path), **where)
    elif v in ("type", "enum", "const"):
        hint = did_you_mean(error.instance, error.schema.get("enum", [])) if v == "enum" else None
        yield Problem(f"invalid value for '{_field_label(path)}'", origin.pos(path),
                      expected=_expected(error.schema), found=show(error.instance), hint=hint, **where)
    elif v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        sign = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[v]
        yield Problem(f"'{_field_label(path)}' is out of range", origin.pos(path),
                      expected=f"{sign} {error.validator_value}", found=show(error.instance), **where)
    else:
        yield Problem(f"invalid '{_field_label(path)}': {error.message}", origin.pos(path), **where)


def layer_problems(entry, origin: Origin, templates: bool) -> list:
    """Schema problems of one `layers:` entry: a layer of a known type, or a block instance (`use:`)."""
    if not isinstance(entry, dict):
        return [Problem("a layer must be a mapping", origin.pos(), expected="a mapping", found=show(entry))]
    name = entry.get("name") if isinstance(entry.get("name"), str) else None
    if "use" in entry:
        return schema_problems(_validator("use", templates), entry, origin, layer=name)
    kind = entry.get("type")
    if kind not in LAYERS:
        if "type" not in entry:
            return [Problem("missing required key 'type'", origin.pos(), layer=name, via=origin.via)]
        return [Problem(f"unknown layer type {show(kind)}", origin.pos(("type",)), layer=name,
                        hint=did_you_mean(kind, LAYERS), via=origin.via)]
    return schema_problems(_validator(kind, templates), entry, origin, layer=name, layer_type=kind)


def validate_document(data, source) -> None:
    """Check a whole net file before block expansion; raises NetdefError with all problems found."""
    root = Origin(source, ())
    if not isinstance(data, dict):
        raise NetdefError(Problem("a net file must be a mapping with 'name' and 'layers'", root.pos(),
                                  found=show(data)))
    problems = schema_problems(_validator("document", True), data, root)
    for prefix, entries in _entry_lists(data):
        for i, entry in enumerate(entries):
            problems += layer_problems(entry, Origin(source, prefix + (i,)), templates=True)
    if problems:
        raise NetdefError(problems)


def _entry_lists(data):
    if isinstance(data.get("layers"), list):
        yield ("layers",), data["layers"]
    for block_name, block in (data.get("blocks") or {}).items():
        if isinstance(block, dict) and isinstance(block.get("layers"), list):
            yield ("blocks", block_name, "layers"), block["layers"]
