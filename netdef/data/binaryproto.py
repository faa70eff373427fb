"""Caffe's .binaryproto blob files (a serialised caffe.BlobProto: mean images, InfogainLoss's matrix H), read
with protobuf from the two messages of caffe.proto they need, declared here rather than compiled."""
from __future__ import annotations

import functools

import numpy as np


class BlobProtoError(ValueError):
    """A file that is not a caffe.BlobProto."""


@functools.cache
def _blob_proto_class():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    label = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="netdef_caffe_blob.proto", package="netdef_caffe", syntax="proto2")
    shape = file.message_type.add(name="BlobShape")
    shape.field.add(name="dim", number=1, type=label.TYPE_INT64, label=label.LABEL_REPEATED).options.packed = True
    blob = file.message_type.add(name="BlobProto")
    blob.field.add(name="shape", number=7, type=label.TYPE_MESSAGE, type_name=".netdef_caffe.BlobShape",
                   label=label.LABEL_OPTIONAL)
    for name, number, kind in (("data", 5, label.TYPE_FLOAT), ("double_data", 8, label.TYPE_DOUBLE)):
        blob.field.add(name=name, number=number, type=kind, label=label.LABEL_REPEATED).options.packed = True
    for name, number in (("num", 1), ("channels", 2), ("height", 3), ("width", 4)):  # the legacy 4-D shape
        blob.field.add(name=name, number=number, type=label.TYPE_INT32, label=label.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("netdef_caffe.BlobProto"))


def parse_blob(data: bytes) -> np.ndarray:
    """A BlobProto's values (float or double data) in its shape (`shape`, else the legacy num x channels x
    height x width)."""
    from google.protobuf.message import DecodeError
    blob = _blob_proto_class()()
    try:
        blob.ParseFromString(data)
    except DecodeError as exc:
        raise BlobProtoError(f"not a Caffe BlobProto ({exc})") from None
    values = np.asarray(blob.double_data if len(blob.double_data) else blob.data, dtype=np.float32)
    if blob.HasField("shape"):
        shape = tuple(blob.shape.dim)
    else:
        shape = tuple(getattr(blob, axis) if blob.HasField(axis) else 1 for axis in ("num", "channels", "height", "width"))
    if int(np.prod(shape)) != values.size:
        raise BlobProtoError(f"its shape {list(shape)} does not hold its {values.size} values")
    return values.reshape(shape)


def read_blob(path) -> np.ndarray:
    with open(path, "rb") as file:
        return parse_blob(file.read())


def blob_bytes(array) -> bytes:
    """A BlobProto file's bytes for an array (its shape and float data), as Caffe writes them."""
    array = np.asarray(array, dtype=np.float32)
    blob = _blob_proto_class()()
    blob.shape.dim.extend(array.shape)
    blob.data.extend(array.reshape(-1).tolist())
    return blob.SerializeToString()
