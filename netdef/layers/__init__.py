"""The layer catalogue. Importing this package registers every layer type in LAYERS."""
from . import common, data, imagedata, inputs, local, loss, neuron, norm, rbf, structure, subsampling, vision  # noqa: F401  (registration)
from . import attention, modern  # noqa: F401  (registration: layers past Caffe)
from . import recurrent  # noqa: F401  (registration: sequence layers)
from . import caffe_io, caffe_losses, caffe_neuron, caffe_spatial, caffe_structure  # noqa: F401  (registration: the rest of Caffe 1.0)
from . import python_layer  # noqa: F401  (registration: Caffe's Python layer)
from .base import LAYERS, Layer, ShapeError, register
from .plugins import load_entry_points

load_entry_points()  # installed extension layer types (`netdef.layers` entry points), before anything reads LAYERS

__all__ = ["LAYERS", "Layer", "ShapeError", "register"]
