"""Caffe's `Python` layer: a layer class from a Python module the net names, with the built-in contract.

Caffe's Python layer runs a `caffe.Layer` subclass (setup, reshape, forward, backward written by hand).
netdef's runs a netdef layer class (netdef.layers.base: fields, shape rule, cost, torch builder), so that
it is validated, inferred, trained, snapshotted and exported as a built-in type. `param_str` holds the
class's parameters as YAML (Caffe's Python layers read it with yaml.load too): the fields of its one
parameter block, or a mapping from block key to fields when it has several.
"""
from __future__ import annotations

import dataclasses
import inspect

import yaml

from ..fields import Bool, Str, apply_defaults
from .base import DATA, Layer, register
from .plugins import PluginError, import_from


class _Refused(Exception):
    """What keeps a Python layer from its class: (path inside the layer, message, expected, found)."""


@register
class Python(Layer):
    """A layer class from a Python module (python_param.module, python_param.layer) with the built-in
    layer contract; its parameters are the YAML in param_str. Caffe compatibility: a net may name the
    class by its own type instead (`plugins:` or a netdef.layers entry point)."""
    summary = "a layer class from a Python module named in the net (Caffe's Python layer; see Extension layers)"
    blocks = {"python_param": {
        "module": Str(None, "the module to import: the net file's folder is searched first, then sys.path",
                      required=True),
        "layer": Str(None, "the layer class in that module (a subclass of netdef.layers.Layer)", required=True),
        "param_str": Str("", "the class's parameters as YAML: the fields of its parameter block"),
        "share_in_parallel": Bool(False, "Caffe's; accepted with no effect (every process builds its own layer)"),
    }}
    bottoms = (0, None)  # the class's own counts are checked in check()
    tops = (0, None)

    def __init__(self, spec):
        super().__init__(spec)
        try:
            self.inner, self.refused = self._inner_layer(spec), None
        except _Refused as exc:
            self.inner, self.refused = None, exc.args
        self.exportable = self.inner is not None and self.inner.exportable  # the class's, read per layer

    def _inner_layer(self, spec) -> Layer:
        cls = self._layer_class(spec)
        self.param_blocks = self._param_blocks(cls)
        params = {key: apply_defaults(fields, self.param_blocks.get(key) or {}) for key, fields in cls.blocks.items()}
        return cls(dataclasses.replace(spec, params=params, raw={**spec.raw, **self.param_blocks}))

    def _layer_class(self, spec):
        module_name, class_name = self.p["module"], self.p["layer"]
        try:
            module = import_from(module_name, spec.base_dir.resolve())
        except PluginError as exc:
            raise _Refused(("python_param", "module"), exc.message, None, None) from None
        cls = getattr(module, class_name, None)
        if not (inspect.isclass(cls) and issubclass(cls, Layer)) or cls is Python:
            raise _Refused(("python_param", "layer"), f"module '{module_name}' has no layer class '{class_name}'",
                           "a subclass of netdef.layers.Layer", None)
        if cls.role == DATA:
            raise _Refused(("python_param", "layer"), f"'{class_name}' is a data layer, which a Python layer "
                           "cannot wrap", f"its own type: `plugins: [{module_name}]` and `type: {class_name}`",
                           class_name)
        return cls

    def _param_blocks(self, cls) -> dict:
        """param_str read as YAML, as {block key: fields}."""
        text = self.p["param_str"]
        try:
            given = yaml.safe_load(text) if text.strip() else {}
        except yaml.YAMLError as exc:
            raise _Refused(("python_param", "param_str"), "param_str is not valid YAML",
                           "a YAML mapping of the layer's fields", str(exc).splitlines()[0]) from None
        if not isinstance(given, dict):
            raise _Refused(("python_param", "param_str"), "param_str must be a mapping",
                           "a YAML mapping of the layer's fields", repr(given))
        if not cls.blocks and given:
            raise _Refused(("python_param", "param_str"), f"{cls.__name__} has no parameters",
                           "an empty param_str", text)
        return {next(iter(cls.blocks)): given} if len(cls.blocks) == 1 else given

    # ---- validation: the class's fields and counts, with the built-in types' messages ----
    def check(self):
        if self.refused:
            yield self.refused
            return
        yield from self._field_problems()
        for what, names, (low, high) in (("bottom", self.spec.bottoms, self.inner.bottoms),
                                         ("top", self.spec.tops, self.inner.tops)):
            if len(names) < low or (high is not None and len(names) > high):
                yield ((what,), f"wrong number of {what}s for {type(self.inner).__name__}",
                       f"{low}" + ("" if low == high else f" to {high if high is not None else 'any'}"),
                       str(len(names)))
        yield from self.inner.check()

    def _field_problems(self):
        # The front end's validator, imported when a graph is built (netdef.front imports the layers first).
        from jsonschema import Draft202012Validator
        from ..front.load import Origin
        from ..front.schema import layer_schema
        from ..front.validate import schema_problems
        cls = type(self.inner)
        given = {"name": self.spec.name, "type": cls.__name__, **self.param_blocks}
        origin = Origin(self.spec.origin.source, self.spec.origin.path + ("python_param", "param_str"))
        validator = Draft202012Validator(layer_schema(cls))
        for problem in schema_problems(validator, given, origin, layer_type=cls.__name__):
            yield (("python_param", "param_str"), f"param_str: {problem.message}", problem.expected, problem.found)

    # ---- everything else is the class's ----
    def tops_may_be_unread(self) -> bool:
        return self.inner is None or self.inner.tops_may_be_unread()

    def infer(self, shapes):
        return self.inner.infer(shapes)

    def param_names(self):
        return self.inner.param_names() if self.inner else ()

    def blob_specs(self, shapes):
        return self.inner.blob_specs(shapes)

    def label_classes(self, shapes):
        return self.inner.label_classes(shapes)

    def macs(self, shapes, outs):
        return self.inner.macs(shapes, outs)

    def connections(self, shapes, outs):
        return self.inner.connections(shapes, outs)

    def output_size_field(self):
        return self.inner.output_size_field()

    def type_text(self):
        return f"Python {self.inner.type_text()}" if self.inner else "Python"

    def key_parameters(self):
        return self.inner.key_parameters() if self.inner else ""

    def build(self, shapes):
        return self.inner.build(shapes)
