"""Caffe's binary protobuf messages (caffe.proto, BVLC Caffe 1.0), made at run time by the `protobuf` package
from the field list below: only the messages and fields netdef reads or writes, with Caffe's field numbers
and types, so that the files Caffe writes parse and the files netdef writes load in Caffe. Fields of a real
file that are not listed here (a layer's convolution_param, ...) are kept as unknown fields by protobuf and
ignored.

`message(name)` gives a message class (`message("NetParameter")()`, `.ParseFromString(data)`).
"""
from __future__ import annotations

import functools

PACKAGE = "caffe"

# message -> (field name, number, label, type, message or enum type name, packed); label "repeated" or
# "optional"; type one of the protobuf scalar names, "message" or "enum".
MESSAGES = {
    "BlobShape": [("dim", 1, "repeated", "int64", None, True)],
    "BlobProto": [
        ("shape", 7, "optional", "message", "BlobShape", False),
        ("data", 5, "repeated", "float", None, True),
        ("diff", 6, "repeated", "float", None, True),
        ("double_data", 8, "repeated", "double", None, True),
        ("double_diff", 9, "repeated", "double", None, True),
        # the deprecated 4-D shape of files older than BlobShape
        ("num", 1, "optional", "int32", None, False),
        ("channels", 2, "optional", "int32", None, False),
        ("height", 3, "optional", "int32", None, False),
        ("width", 4, "optional", "int32", None, False),
    ],
    "BlobProtoVector": [("blobs", 1, "repeated", "message", "BlobProto", False)],
    "Datum": [
        ("channels", 1, "optional", "int32", None, False),
        ("height", 2, "optional", "int32", None, False),
        ("width", 3, "optional", "int32", None, False),
        ("data", 4, "optional", "bytes", None, False),
        ("label", 5, "optional", "int32", None, False),
        ("float_data", 6, "repeated", "float", None, False),
        ("encoded", 7, "optional", "bool", None, False),
    ],
    "NetParameter": [
        ("name", 1, "optional", "string", None, False),
        ("layer", 100, "repeated", "message", "LayerParameter", False),
        ("layers", 2, "repeated", "message", "V1LayerParameter", False),
    ],
    "LayerParameter": [
        ("name", 1, "optional", "string", None, False),
        ("type", 2, "optional", "string", None, False),
        ("bottom", 3, "repeated", "string", None, False),
        ("top", 4, "repeated", "string", None, False),
        ("phase", 10, "optional", "enum", "Phase", False),
        ("blobs", 7, "repeated", "message", "BlobProto", False),
    ],
    "V1LayerParameter": [  # the legacy `layers` of nets written before 2015 (LayerType enum as a number)
        ("bottom", 2, "repeated", "string", None, False),
        ("top", 3, "repeated", "string", None, False),
        ("name", 4, "optional", "string", None, False),
        ("type", 5, "optional", "int32", None, False),
        ("blobs", 6, "repeated", "message", "BlobProto", False),
    ],
    "SolverState": [
        ("iter", 1, "optional", "int32", None, False),
        ("learned_net", 2, "optional", "string", None, False),
        ("history", 3, "repeated", "message", "BlobProto", False),
        ("current_step", 4, "optional", "int32", None, False),
    ],
}
ENUMS = {"Phase": [("TRAIN", 0), ("TEST", 1)]}


def _file_descriptor():
    from google.protobuf import descriptor_pb2
    FieldProto = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="netdef_caffe.proto", package=PACKAGE, syntax="proto2")
    for name, values in ENUMS.items():
        enum = proto.enum_type.add(name=name)
        for value_name, number in values:
            enum.value.add(name=value_name, number=number)
    for name, fields in MESSAGES.items():
        message_proto = proto.message_type.add(name=name)
        for field_name, number, label, kind, type_name, packed in fields:
            field = message_proto.field.add(name=field_name, number=number,
                                            label=getattr(FieldProto, f"LABEL_{label.upper()}"),
                                            type=getattr(FieldProto, f"TYPE_{kind.upper()}"))
            if type_name:
                field.type_name = f".{PACKAGE}.{type_name}"
            if packed:
                field.options.packed = True
    return proto


@functools.lru_cache(maxsize=None)
def _pool():
    from google.protobuf import descriptor_pool
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor())
    return pool


@functools.lru_cache(maxsize=None)
def message(name: str):
    """The message class of Caffe's `name` (one of MESSAGES)."""
    from google.protobuf import message_factory
    return message_factory.GetMessageClass(_pool().FindMessageTypeByName(f"{PACKAGE}.{name}"))


def parse(name: str, data: bytes):
    """`data` parsed as message `name`; raises google.protobuf.message.DecodeError on damaged bytes."""
    parsed = message(name)()
    parsed.ParseFromString(data)
    return parsed
