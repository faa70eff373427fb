"""Extension layer types: Python modules whose layer classes follow the built-in contract (netdef.layers.base).

Code runs only where the user names it: a `plugins: [module]` line in a net file, a `type: Python` layer's
`python_param.module`, or an installed distribution that declares a `netdef.layers` entry point (installing
it is the opt-in). A module is searched in the net file's folder first, then on sys.path.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
import sys
import warnings
from pathlib import Path

from .base import LAYERS, Layer, register

ENTRY_POINT_GROUP = "netdef.layers"
_MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class PluginError(Exception):
    """A plugin that cannot be used; the front end positions it at the line that names the module."""

    def __init__(self, message, hint=None):
        super().__init__(message)
        self.message, self.hint = message, hint


def import_from(name: str, folder: Path):
    """Import module `name`, searching `folder` (the net file's) before sys.path. A module imported before
    is reused, as Python always does."""
    if not isinstance(name, str) or not _MODULE_NAME.match(name):
        raise PluginError(f"{name!r} is not a Python module name", hint="write a module name such as "
                                                                        "'axpy' or 'mypackage.layers'")
    if name in sys.modules:
        return sys.modules[name]
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            raise PluginError(f"no Python module named '{name}' (searched {folder}, then sys.path)",
                              hint=f"put {name.replace('.', '/')}.py beside the net file, or install it") from None
        raise PluginError(f"plugin module '{name}' cannot be imported: {exc}") from None
    except Exception as exc:  # the module's own code failed: say where, never a traceback
        raise PluginError(f"plugin module '{name}' failed while importing: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(str(folder))


def layer_classes(module) -> list:
    """The layer classes a module defines (subclasses of netdef.layers.Layer written in it)."""
    return [cls for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, Layer) and cls.__module__ == module.__name__ and not cls.__name__.startswith("_")]


def register_plugin(cls) -> str:
    """Register a plugin's layer class under its class name; registering the same class again is a no-op
    (a module imported once may be named by many nets)."""
    if not (inspect.isclass(cls) and issubclass(cls, Layer)):
        raise PluginError(f"{cls!r} is not a layer class", hint="a layer type subclasses netdef.layers.Layer")
    name = cls.__name__
    if LAYERS.get(name) is cls:
        return name
    if name in LAYERS:
        raise PluginError(f"layer type '{name}' of module '{cls.__module__}' is already defined by "
                          f"'{LAYERS[name].__module__}'", hint="rename the class")
    try:
        register(cls)
    except RuntimeError as exc:
        raise PluginError(str(exc)) from None
    return name


def load_plugin(name: str, folder: Path) -> list:
    """Import a plugin module and register its layer classes; returns their type names."""
    module = import_from(name, folder)
    classes = layer_classes(module)
    if not classes:
        raise PluginError(f"plugin module '{name}' defines no layer class",
                          hint="a layer type is a subclass of netdef.layers.Layer named after the type")
    return [register_plugin(cls) for cls in classes]


def load_entry_points() -> None:
    """Register the layer types of installed distributions (`netdef.layers` entry points: a layer class, or
    a module of them). A broken plugin is reported and skipped: it must not stop netdef for every net."""
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            value = entry.load()
            classes = [value] if inspect.isclass(value) else layer_classes(value)
            for cls in classes:
                register_plugin(cls)
        except Exception as exc:  # any failure of third-party code: a warning naming it, not a crash
            warnings.warn(f"netdef: layer plugin entry point '{entry.name} = {entry.value}' skipped: "
                          f"{type(exc).__name__}: {getattr(exc, 'message', exc)}", stacklevel=2)
