"""The JSON Schemas of net and solver files, assembled from the layer classes and the solver's field table.

Nothing here lists layer types or their fields by hand: the registry and the classes' field tables are
the only source. Two variants: strict (for fully expanded nets) and template-tolerant (for files that
define blocks, where any value may be written as "${expression}"); editors get the latter.
"""
from __future__ import annotations

from ..fields import TEMPLATE, Block, Bool, Enum, Float, Int, Str, block_schema, shared_ref
from ..layers import LAYERS
from .limits import MAX_REPEAT

SCHEMA_ID = "https://netdef.dev/schema"

RULE_FIELDS = {
    "phase": Enum(["TRAIN", "TEST"], None, "the phase this rule matches"),
    "min_level": Int(None, "lowest net state level matched"),
    "max_level": Int(None, "highest net state level matched"),
    "stage": Str(None, "stages the net state must all have", repeated=True),
    "not_stage": Str(None, "stages the net state must not have", repeated=True),
}

PARAM_SPEC_FIELDS = {
    "name": Str(None, "share this blob with every other blob of the same name"),
    "lr_mult": Float(1.0, "multiplier on the solver's learning rate (0 freezes the blob)"),
    "decay_mult": Float(1.0, "multiplier on the solver's weight_decay"),
    "share_mode": Enum(["STRICT", "PERMISSIVE"], "STRICT", "STRICT: shared shapes must match"),
}

COMMON_FIELDS = {
    "name": Str(None, "layer name (unique; names parameters: conv1.weight)", required=True),
    "type": Str(None, "layer type", required=True),
    "bottom": Str(None, "input blob name(s)", repeated=True),
    "top": Str(None, "output blob name(s); equal to the bottom for in-place", repeated=True),
    "include": Block(RULE_FIELDS, "net states that include this layer (any rule)", repeated=True, ref="rule"),
    "exclude": Block(RULE_FIELDS, "net states that exclude this layer (any rule)", repeated=True, ref="rule"),
    "param": Block(PARAM_SPEC_FIELDS, "one entry per learnable blob, in Caffe order (one mapping or a list)",
                   repeated=True, ref="param_spec"),
    "loss_weight": Float(None, "weight of each top in the net's loss", repeated=True),
    "propagate_down": Bool(None, "per bottom: whether to back-propagate into it", repeated=True),
}

USE_FIELDS = {
    "use": Str(None, "name of the block to instantiate", required=True),
    "name": Str(None, "instance name (the block sees it as ${name})", required=True),
    "bottom": Str(None, "input blob name(s) (the block sees them as ${bottom})", repeated=True),
    "top": Str(None, "output blob name (the block sees it as ${top}; default: the instance name)"),
    "with": Block({}, "block arguments"),
    "repeat": Int(None, "chain this many instances, each fed by the previous one's top", minimum=1,
                  maximum=MAX_REPEAT),
    "include": COMMON_FIELDS["include"],
    "exclude": COMMON_FIELDS["exclude"],
}


def layer_fields(cls) -> dict:
    return {**COMMON_FIELDS, **{key: Block(fields, f"{cls.__name__} parameters")
                                for key, fields in cls.blocks.items()}}


def layer_schema(cls, templates=False, defs=None) -> dict:
    schema = block_schema(layer_fields(cls), templates, defs)
    if defs is not None:  # the fields every layer has are spelt out once, not once per layer type
        for name in COMMON_FIELDS:
            schema["properties"][name] = shared_ref(defs, f"layer_{name}", schema["properties"][name])
    schema["properties"]["type"] = {"const": cls.__name__}
    if cls.__doc__:
        schema["description"] = cls.__doc__.strip().splitlines()[0]
    if templates:
        schema["properties"]["if"] = IF_SCHEMA
    return schema


WITH_EACH_SCHEMA = {
    "anyOf": [{"type": "array", "items": {"type": "object"}, "minItems": 1},
              {"type": "object", "additionalProperties": {"type": "array"}, "minProperties": 1}],
    "description": "per-repetition arguments: a list of mappings (one per repetition) or a mapping of equally "
                   "long lists (one column per argument); sets the number of repetitions"}
IF_SCHEMA = {"anyOf": [{"type": "boolean"}, TEMPLATE], "description": "inside a block: keep this entry only if true"}


def use_schema(templates=True, defs=None) -> dict:
    schema = block_schema(USE_FIELDS, templates, defs)
    schema["properties"]["with"] = {"type": "object", "description": USE_FIELDS["with"].doc}
    schema["properties"]["with_each"] = WITH_EACH_SCHEMA
    if templates:
        schema["properties"]["if"] = IF_SCHEMA
    return schema


def net_schema() -> dict:
    """The schema editors use for net files (blocks and templates allowed)."""
    types = sorted(LAYERS)
    shared = {}  # blocks used by many layers (rules, param specs, fillers), each defined once
    layer_defs = {f"layer.{name}": layer_schema(LAYERS[name], True, shared) for name in types}
    dispatch = [{"if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                 "then": {"$ref": f"#/$defs/layer.{name}"}} for name in types]
    entry = {
        "type": "object",
        "if": {"required": ["use"]},
        "then": {"$ref": "#/$defs/use"},
        "else": {"required": ["name", "type"],
                 "properties": {"type": {"enum": types}},
                 "allOf": dispatch},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_ID}/net.json",
        "title": "netdef net",
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "net name"},
            "import": {"type": "array", "items": {"type": "string"},
                       "description": "files whose blocks this file may use (paths relative to this file, inside "
                                      "its folder unless allow_outside_root)"},
            "allow_outside_root": {"type": "boolean", "description": "let `import:` name files outside the "
                                   "folder of the net file given to netdef (default false)"},
            "plugins": {"type": "array", "items": {"type": "string"},
                        "description": "Python modules of extension layer types to import (searched in this "
                                       "file's folder, then sys.path): the only way a net file runs code"},
            "blocks": {"type": "object", "description": "reusable sub-graphs",
                       "additionalProperties": {"$ref": "#/$defs/block"}},
            "layers": {"type": "array", "items": {"$ref": "#/$defs/entry"}},
            "force_backward": {"type": "boolean", "description": "Caffe's: compute every layer's backward, "
                               "gradients of the inputs included; accepted with no effect, as autograd already "
                               "gives the gradient of every tensor that requires it"},
        },
        "additionalProperties": False,
        "$defs": {
            "entry": entry,
            "use": use_schema(True, shared),
            "block": {"type": "object", "properties": {
                "args": {"type": "object", "description": "argument names and defaults (null: required; "
                                                          "{default: null}: optional, null when not given)"},
                "doc": {"type": "string"},
                "layers": {"type": "array", "items": {"$ref": "#/$defs/entry"}}},
                "required": ["layers"], "additionalProperties": False},
            **layer_defs,
            **shared,
        },
    }
