"""Fuzz netdef's readers: mutated copies of their inputs through the commands that read them.

Three inputs (`--inputs`, default all three):

- yaml: the shipped nets and solvers (nets/, nets/blocks/, solvers/) through `netdef check`: keys deleted,
  duplicated or swapped, values of other types, huge and negative numbers, template expressions, deep
  nesting, aliases, tags, complex keys, truncation, random and non-printable bytes.
- prototxt: Caffe's prototxt nets and solvers (../shared/caffe: BVLC's examples and models, the fixtures)
  through `netdef check` and `netdef import -o`: fields deleted, duplicated or swapped, values of other
  types, huge and negative numbers, unbalanced braces, bad strings and escapes, legacy V1 `layers {}` and
  net-level inputs mixed in, truncation, random bytes, deep nesting, a field repeated 10,000 times.
- binary: the files Caffe 1.0 wrote (the fixtures' .caffemodel through `netdef test --weights`, their
  .solverstate through `netdef train --snapshot`, one iteration past it), a .binaryproto mean (netdef's
  writer, of a CIFAR-shaped LMDB) through `netdef check` and `netdef test` of the CIFAR net that names it,
  and the fixtures' MNIST LMDB with one to three Datum records replaced, through `netdef test`: truncated,
  flipped, inserted and deleted bytes, big varints, and fields of the decoded message set to huge,
  negative, empty or odd values (an encoded image claiming 30000 x 30000 pixels).

Each mutated file is written over its original in a scratch folder (copies of nets/, solvers/ and
../shared/caffe, with the data Caffe's nets name: so imports, net paths and data sources resolve), and the
commands run on it in a forked process with a time and memory limit. Exit 0 (accepted) and 2 (a clean
error) are fine; anything else is a finding: a traceback (crash, with the innermost netdef frame as its
site), a hang past the time limit, or a memory blowup.

    python tools/fuzz.py --cases 20000 --inputs yaml   # a summary line, then one line per distinct site
    python tools/fuzz.py --cases 500 --save DIR        # also keep each finding's file in DIR

tests/test_fuzz.py runs the same engine on a few hundred cases with a fixed seed.
"""
from __future__ import annotations

import argparse
import atexit
import collections
import functools
import io
import os
import pickle
import random
import re
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(str(p.relative_to(ROOT)) for folder in ("nets", "nets/blocks", "solvers")
                 for p in (ROOT / folder).glob("*.yaml"))
CAFFE = ROOT.parent / "shared" / "caffe"  # BVLC Caffe's prototxts and the files Caffe 1.0 wrote (fixtures/)

HUGE = [10 ** 20, 10 ** 30, 2 ** 63, 2 ** 31, -1, 0, -10 ** 9, 10 ** 9, 1e308, float("inf"), float("nan"), -0.0]
TEMPLATES = ["${9**9**9}", "${'a'*10**10}", "${[1]*10**9}", "${${i}}", "${" * 30 + "1" + "}" * 30, "${unknown}",
             "${1/0}", "${10**10**10}", "${i}", "${name[99]}", "${bottom.upper()}", "${().__class__}",
             "${max()}", "${len(5)}", "${[1,2][5]}", "${'x' * -1}", "${2 ** 10000}", "${str(10**5000)}",
             "${[[1] * 1000] * 1000}", "${'%s' % 1}", "${-(-(-(-(1))))}", "${(1,) * 10**8}", "${1 if}"]
OTHER_VALUES = [None, True, "text", 3.5, [], {}, [1, 2], {"a": 1}, "", [[[]]], {"type": "ReLU"}, "ReLU",
                [None], {"name": None}, "../../../../etc/passwd", "/dev/zero", "nets/lenet.yaml"]
TEXT_SNIPPETS = ["!!python/name:os.system", "!!python/object/apply:os.system ['true']", "!!binary aGVsbG8=",
                 "!!set {a, b}", "!!omap [a: 1]", "? [complex, key]\n: value\n", "? {a: 1}: 2\n", "\x00", "\x07",
                 "\ufeff", "\t", "&a [*a]", "*undefined", "<<: 5\n", "<<: [1, 2]\n", "%YAML 1.1\n---\n", "---\n",
                 "...\n", "{", "[", "'", '"', "|\n", ">-\n", "- - - - -\n", "key: &x value\nother: *x\n",
                 "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"), "\x1b[31m", "\r", "\x85"]


# ---- mutations ----

def _containers(value):
    """Every mapping and list inside a document (iteratively: mutated documents nest deeply)."""
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if isinstance(item, (dict, list)) and id(item) not in seen:
            seen.add(id(item))
            yield item
            stack.extend(item.values() if isinstance(item, dict) else item)


def _nested(depth, leaf, rng):
    for _ in range(depth):
        leaf = [leaf] if rng.random() < 0.5 else {"k": leaf}
    return leaf


def _new_value(rng: random.Random, old):
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(HUGE)
    if roll < 0.55:
        return rng.choice(TEMPLATES)
    if roll < 0.65:
        return _nested(rng.choice([5, 40, 120]), old, rng)
    if roll < 0.75 and isinstance(old, (int, float)) and not isinstance(old, bool):
        return -old if rng.random() < 0.5 else old * rng.choice([1000, 10 ** 6, 10 ** 12])
    return rng.choice(OTHER_VALUES)


def mutate_data(data, rng: random.Random):
    """A structural mutation of a parsed document (in place); returns the document."""
    containers = [c for c in _containers(data) if c]
    if not containers:
        return rng.choice(OTHER_VALUES)
    target = rng.choice(containers)
    keys = list(target) if isinstance(target, dict) else list(range(len(target)))
    key = rng.choice(keys)
    roll = rng.random()
    if roll < 0.2:
        del target[key]
    elif roll < 0.35 and len(keys) > 1:
        other = rng.choice(keys)
        target[key], target[other] = target[other], target[key]
    elif roll < 0.45 and isinstance(target, list):
        target.insert(key, target[key])  # a repeated layer or list item
    elif roll < 0.5 and isinstance(target, dict):
        target[rng.choice(["repeat", "use", "with", "if", "import", "blocks", "param", "include", "bottom",
                           "top", "type", "name", "args", "loss_weight", "propagate_down"])] = _new_value(rng, None)
    else:
        target[key] = _new_value(rng, target[key])
    return data


def mutate_text(text: str, rng: random.Random) -> str:
    """A mutation of the file's bytes: truncation, insertions of odd snippets, deleted or duplicated lines."""
    roll = rng.random()
    lines = text.splitlines(keepends=True)
    if roll < 0.2:
        return text[:rng.randrange(len(text) + 1)]
    if roll < 0.45:
        at = rng.randrange(len(text) + 1)
        return text[:at] + rng.choice(TEXT_SNIPPETS) + text[at:]
    if roll < 0.6 and lines:
        at = rng.randrange(len(lines))
        return "".join(lines[:at] + [lines[at]] + lines[at:])  # a duplicated line: duplicate keys
    if roll < 0.7 and lines:
        at = rng.randrange(len(lines))
        return "".join(lines[:at] + lines[at + 1:])
    if roll < 0.8:
        return "".join(chr(rng.randrange(0, 0x250)) if rng.random() < 0.02 else c for c in text)
    if roll < 0.85:
        depth = rng.choice([50, 500, 5000])
        at = rng.randrange(len(text) + 1)
        return text[:at] + "[" * depth + "1" + "]" * depth + text[at:]
    if roll < 0.9:
        laughs = "a: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]\n"
            for i in range(1, 9))
        return laughs + text
    return text + "\n" + rng.choice(TEXT_SNIPPETS) + "\n"


# ---- prototxt mutations ----

PROTOTXT_VALUES = ["0", "-1", "-0", "1.5", "1e400", "-1e400", "1e-400", "99999999999999999999999",
                   "9223372036854775808", "2147483648", "-2147483649", "0x7fffffff", "0xffffffffffffffff", "nan",
                   "inf", "-inf", "true", "false", "TRAIN", "TEST", "MAX", "NOT_AN_ENUM", '""', '"x"', '"\\q"',
                   '"\\777"', '"\\x"', '"\\u12"', '"\\N{x}"', "'single'", '"unterminated', '"a" "b"', "[]",
                   "[1, 2]", "[[1]]", "{ }", "{ a: 1 }", "< >", '"../../../../etc/passwd"', '"/dev/zero"', '"/"',
                   '"' + "x" * 5000 + '"', "-", "+", ".", "1.2.3", "1e", "0x", "1f", "--1"]
# Whole fields put where a line starts: legacy V0/V1 layers and net-level inputs, odd layers, phase rules,
# parameter blocks with odd values, and solver fields.
PROTOTXT_SNIPPETS = [
    'layers { name: "v1" type: CONVOLUTION bottom: "data" top: "v1" blobs_lr: 1 weight_decay: 1 '
    'convolution_param { num_output: 4 kernel_size: 3 } }',
    'layers { name: "v1relu" type: RELU bottom: "data" top: "data" }', 'layers { type: 999 }',
    'layers { layer { name: "v0" type: "conv" num_output: 4 kernelsize: 3 } bottom: "data" top: "v0" }',
    'input: "extra"', "input_dim: 1", "input_shape { dim: 1 dim: 3 }", 'input: "data" input_dim: 1 input_dim: 1',
    "layer { }", 'layer { name: "x" }', 'layer { type: "Nope" }', 'layer { name: "data" type: "Input" top: "data" }',
    'layer { name: "a" type: "ReLU" bottom: "nowhere" top: "a" }', "include { phase: TEST }",
    'exclude { stage: "deploy" }', "include { min_level: 5 max_level: -1 }",
    'param { lr_mult: -1 decay_mult: 1e30 name: "shared" }', 'param { name: "conv1_w" }', "loss_weight: 1e30",
    "propagate_down: true", "propagate_down: [true, false, true]", 'bottom: "label"', 'top: "data"',
    'name: "conv1"', "transform_param { crop_size: 100000 mirror: true scale: -1 mean_value: 1 mean_value: 2 }",
    "convolution_param { num_output: 0 kernel_size: 0 stride: 0 dilation: 0 group: 7 }",
    "pooling_param { pool: STOCHASTIC kernel_size: 100000 global_pooling: true }",
    "inner_product_param { num_output: 1000000000 axis: -7 }", "reshape_param { shape { dim: -1 dim: -1 } }",
    "slice_param { slice_point: 5 slice_point: 2 }", 'data_param { source: "/" batch_size: 0 backend: LEVELDB }',
    "dummy_data_param { shape { dim: 100000 dim: 100000 } }", 'state { phase: TEST level: 3 stage: "a" }',
    "force_backward: true",
    'net_param { layer { name: "d" type: "Input" top: "d" input_param { shape { dim: 1 } } } }',
    'test_state { stage: "x" }', "test_iter: 5", "stepvalue: -5", "solver_type: ADAM", 'type: "Nope"',
    'lr_policy: "multistep"', "max_iter: 99999999999", 'snapshot_prefix: "/dev/null/x"',
    'train_net: "nothing.prototxt"', 'net: "lenet_solver.prototxt"', 'test_net: "x"', "weights: \"x.caffemodel\"",
]
FIELD_VALUE = re.compile(r"^([ \t]*\w+[ \t]*:[ \t]*)([^#\n{]*?)[ \t]*(?:#.*)?$", re.M)  # `name: value` lines
BLOCK_START = re.compile(r"^[ \t]*\w+[ \t]*:?[ \t]*\{", re.M)
QUOTED_TYPE = re.compile(r'\btype:\s*"(\w+)"')


def _block_span(text: str, rng: random.Random):
    """(start, end) of a random `name { ... }` block, through its closing brace; None if there is none."""
    starts = list(BLOCK_START.finditer(text))
    if not starts:
        return None
    start = rng.choice(starts)
    depth = 0
    for index in range(start.end() - 1, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return start.start(), index + 1
    return start.start(), len(text)


def _line_start(text: str, rng: random.Random) -> int:
    starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
    return rng.choice(starts)


def mutate_prototxt(text: str, rng: random.Random) -> str:
    """One mutation of prototxt text: a value replaced or two swapped, a block deleted or repeated, a field
    inserted, a brace, bracket or quote inserted or deleted, V1 syntax mixed in, deep nesting, a field
    repeated 10,000 times, or one of mutate_text's (truncation, odd bytes, lines deleted or duplicated)."""
    fields = [m for m in FIELD_VALUE.finditer(text) if m.group(2)]
    roll = rng.random()
    if roll < 0.22 and fields:
        field = rng.choice(fields)
        return text[:field.start(2)] + rng.choice(PROTOTXT_VALUES) + text[field.end(2):]
    if roll < 0.3 and len(fields) > 1:
        first, second = sorted(rng.sample(fields, 2), key=lambda m: m.start())
        return (text[:first.start(2)] + second.group(2) + text[first.end(2):second.start(2)] + first.group(2)
                + text[second.end(2):])
    span = _block_span(text, rng) if roll < 0.42 else None
    if span:
        start, end = span
        copies = rng.choice([0, 0, 2, 3, 50])
        return text[:start] + text[start:end] * copies + text[end:]
    if roll < 0.54:
        at = _line_start(text, rng)
        return text[:at] + rng.choice(PROTOTXT_SNIPPETS) + "\n" + text[at:]
    if roll < 0.62:
        at = rng.randrange(len(text) + 1)
        if rng.random() < 0.5:
            return text[:at] + rng.choice('{}[]<>:"') + text[at:]
        marks = [i for i, c in enumerate(text) if c in '{}[]"']
        return text if not marks else (lambda i: text[:i] + text[i + 1:])(rng.choice(marks))
    if roll < 0.68:  # V1 syntax: a layer written `layers`, a type as a V1 enum name
        if rng.random() < 0.5:
            return re.sub(r"\blayer(\s*\{)", r"layers\1", text, count=rng.choice([0, 1]))
        return QUOTED_TYPE.sub(lambda m: f"type: {m.group(1).upper()}", text, count=rng.choice([0, 1]))
    if roll < 0.74:
        depth = rng.choice([50, 500, 5000, 20000])
        nested = "n { " * depth + "}" * depth if rng.random() < 0.5 else "n: " + "[" * depth + "1" + "]" * depth
        at = _line_start(text, rng)
        return text[:at] + nested + "\n" + text[at:]
    if roll < 0.78 and fields:
        field = rng.choice(fields)
        line = text[field.start():field.end()] + "\n"
        return text[:field.start()] + line * rng.choice([1000, 10000]) + text[field.start():]
    return mutate_text(text, rng)


# ---- binary mutations ----

BIG_VARINTS = [2 ** 31 - 1, 2 ** 32 - 1, 2 ** 63 - 1, 2 ** 64 - 1, 10 ** 9, 1 << 28]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def png_claiming(width: int, height: int, pixels: bytes = b"\0" * 100) -> bytes:
    """A gray PNG claiming `width` x `height` pixels, its image data the compressed `pixels` (far fewer)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b"")


# Encoded images for a Datum's data: a valid one, one claiming 30000 x 30000 pixels (a decompression bomb),
# one whose pixels are missing, a bare PNG signature, a JPEG start.
ODD_IMAGES = [png_claiming(2, 2, b"\0" * 6), png_claiming(30000, 30000), png_claiming(5000, 5000, b"\0" * 10),
              b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0" + b"\0" * 20]


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One mutation of a binary file: truncated, bytes flipped, inserted or deleted, a big varint written
    over, a span repeated, or random bytes instead."""
    roll, at = rng.random(), rng.randrange(len(data) + 1)
    if roll < 0.25:
        return data[:rng.choice([at, rng.randrange(min(len(data), 64) + 1)])]
    if roll < 0.45 and data:
        flipped = bytearray(data)
        for _ in range(rng.choice([1, 4, 16])):
            flipped[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        return bytes(flipped)
    if roll < 0.55:
        return data[:at] + rng.randbytes(rng.choice([1, 8, 64])) + data[at:]
    if roll < 0.72:
        return data[:at] + _varint(rng.choice(BIG_VARINTS)) + data[at + rng.choice([0, 1, 5, 10]):]
    if roll < 0.82:
        return data[:at] + data[at + rng.randrange(1, 4096):]
    if roll < 0.92:
        return data[:at] + data[at:at + rng.randrange(1, 4096)] * rng.choice([2, 10]) + data[at:]
    return rng.randbytes(rng.choice([1, 10, 1000, 100000]))


def _messages(message):
    """A decoded message and every message set inside it."""
    stack = [message]
    while stack:
        item = stack.pop()
        yield item
        for field, value in item.ListFields():
            if field.type == field.TYPE_MESSAGE:
                stack.extend(value if field.is_repeated else [value])


def _odd_scalar(field, rng: random.Random):
    """An odd value for a scalar field, in its type."""
    if field.type == field.TYPE_BYTES:
        return rng.choice([b"", rng.randbytes(rng.choice([1, 100, 1000])), *ODD_IMAGES])
    if field.cpp_type == field.CPPTYPE_STRING:
        return rng.choice(["", "x", "conv1", "../../../../etc/passwd", "/dev/zero", "/", "\x00", "\u00e9",
                           "a" * 10000, "lenet_iter_1000.caffemodel", "missing.caffemodel"])
    if field.cpp_type == field.CPPTYPE_BOOL:
        return rng.random() < 0.5
    if field.cpp_type == field.CPPTYPE_ENUM:
        return rng.choice([value.number for value in field.enum_type.values])
    if field.cpp_type in (field.CPPTYPE_FLOAT, field.CPPTYPE_DOUBLE):
        return rng.choice([0.0, -1.0, float("nan"), float("inf"), float("-inf"), 1e38, 1e-45])
    if field.cpp_type == field.CPPTYPE_INT64:
        return rng.choice([0, -1, 1, 3, 2 ** 31, 2 ** 40, 2 ** 62, 2 ** 63 - 1, -2 ** 63])
    return rng.choice([0, -1, 1, 3, 1000, 65536, 2 ** 31 - 1, -2 ** 31])


def _mutate_field(owner, field, rng: random.Random) -> None:
    value = getattr(owner, field.name)
    is_message = field.type == field.TYPE_MESSAGE
    if not field.is_repeated:
        if is_message:
            owner.ClearField(field.name) if owner.HasField(field.name) else value.SetInParent()
        else:
            setattr(owner, field.name, _odd_scalar(field, rng))
        return
    roll = rng.random()
    if roll < 0.25 or not len(value):  # more items
        if is_message:
            added = value.add()
            if len(value) > 1 and rng.random() < 0.7:
                added.CopyFrom(value[rng.randrange(len(value) - 1)])
        else:
            value.extend([_odd_scalar(field, rng)] * rng.choice([1, 2, 100]))
    elif roll < 0.5:
        del value[rng.randrange(len(value)):]
    elif roll < 0.6:
        del value[:]
    elif is_message:
        del value[rng.randrange(len(value))]
    else:
        value[rng.randrange(len(value))] = _odd_scalar(field, rng)


def mutate_message(message, rng: random.Random):
    """One change to a decoded message (in place): a field of it or of a message inside it, set or not,
    given an odd value, cleared, cut short, or given more (copied) items."""
    owner = rng.choice(list(_messages(message)))
    try:
        _mutate_field(owner, rng.choice(owner.DESCRIPTOR.fields), rng)
    except (ValueError, TypeError):
        pass  # a value protobuf refuses to hold (out of its type's range) makes no file
    return message


def mutate_binary(data: bytes, message_name: str, rng: random.Random) -> bytes:
    """A mutated copy of a serialized Caffe message: its bytes changed, or its decoded fields."""
    if rng.random() < 0.5:
        return mutate_bytes(data, rng)
    from netdef.caffe import proto
    message = proto.parse(message_name, data)
    for _ in range(rng.choice([1, 1, 2, 3])):
        mutate_message(message, rng)
    return message.SerializeToString()


def mutate_datum_records(folder: Path, rng: random.Random) -> bytes:
    """The data.mdb of a copy of the LMDB `folder` with one to three Datum records replaced: by mutations,
    or by an encoded Datum of an odd image. The first record (the one `netdef check` reads) often."""
    import lmdb
    from netdef.data.datum import datum_bytes
    with tempfile.TemporaryDirectory(prefix="netdef-fuzz-lmdb-") as temp:
        copy = writable_copy(folder, Path(temp) / folder.name)
        env = lmdb.open(str(copy), map_size=1 << 30)
        try:
            with env.begin(write=True) as transaction:
                count = env.stat()["entries"]
                chosen = {rng.choice([0, rng.randrange(count)]) for _ in range(rng.choice([1, 1, 2, 3]))}
                for key in (f"{index:08d}".encode() for index in sorted(chosen)):
                    if rng.random() < 0.15:
                        value = datum_bytes(None, 0, rng.choice(ODD_IMAGES))
                    else:
                        value = mutate_binary(transaction.get(key, b""), "Datum", rng)
                    transaction.put(key, value)
        finally:
            env.close()
        return (copy / "data.mdb").read_bytes()


# ---- cases ----

@dataclass
class Case:
    number: int
    file: str  # the file it mutates, relative to the scratch folder
    data: str | bytes  # the mutated file
    # netdef's arguments of each command run on it ("{scratch}" is the scratch folder); none: `netdef check FILE`
    commands: tuple = ()

    def __post_init__(self):
        self.commands = self.commands or (("check", at(self.file)),)


def at(path: str) -> str:
    """A path in the scratch folder, as a command's argument."""
    return "{scratch}/" + path


def yaml_case(rng: random.Random) -> tuple:
    file = rng.choice(SHIPPED)
    text = (ROOT / file).read_text(encoding="utf-8")
    if rng.random() < 0.65:
        data = yaml.safe_load(text)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            data = mutate_data(data, rng)
        try:
            text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        except (yaml.YAMLError, RecursionError):
            text = mutate_text(text, rng)
    else:
        text = mutate_text(text, rng)
    return file, text, ()


def prototxt_case(rng: random.Random) -> tuple:
    file = rng.choice(PROTOTXTS)
    text = (caffe_root() / Path(file).relative_to("caffe")).read_text(encoding="utf-8")
    for _ in range(rng.choice([1, 1, 2, 3])):
        text = mutate_prototxt(text, rng)
    return file, text, _prototxt_commands(file)


def _prototxt_commands(file: str) -> tuple:
    return ("check", at(file)), ("import", at(file), "-o", at("work/imported.yaml"))


def binary_case(rng: random.Random) -> tuple:
    file = rng.choice(sorted(BINARY_FILES))
    message_name, commands = BINARY_FILES[file]
    original = caffe_root() / Path(file).relative_to("caffe")
    if message_name == "Datum":
        return file, mutate_datum_records(original.parent, rng), commands
    return file, mutate_binary(original.read_bytes(), message_name, rng), commands


CASE_MAKERS = {"yaml": yaml_case, "prototxt": prototxt_case, "binary": binary_case}
INPUTS = tuple(CASE_MAKERS)


def make_case(number: int, seed: int = 0, inputs=INPUTS) -> Case:
    """Case `number` of a run: the same seed, number and inputs always give the same mutation."""
    rng = random.Random(f"{seed}:{number}")
    kind = inputs[0] if len(inputs) == 1 else rng.choice(inputs)  # one input alone: the cases it always had
    return Case(number, *CASE_MAKERS[kind](rng))


# ---- the Caffe root the prototxt and binary cases live in ----

FIXTURES = "caffe/fixtures"
LENET = f"{FIXTURES}/lenet_train_test.prototxt"
CAFFEMODEL = f"{FIXTURES}/lenet_iter_1000.caffemodel"
SOLVERSTATE = f"{FIXTURES}/lenet_iter_1000.solverstate"
RESUME_SOLVER = f"{FIXTURES}/resume_solver.prototxt"
CIFAR_NET = "caffe/examples/cifar10/cifar10_quick_train_test.prototxt"
PROTOTXTS = sorted(f"caffe/{p.relative_to(CAFFE)}" for p in CAFFE.rglob("*.prototxt"))


def _scored(model: str, *extra: str) -> tuple:
    return ("test", "--model", at(model), "--weights", at(CAFFEMODEL), "--iterations", "1", *extra)


BINARY_FILES = {  # file -> (the Caffe message it holds, netdef's commands that read it)
    CAFFEMODEL: ("NetParameter", (_scored(LENET),)),
    SOLVERSTATE: ("SolverState", (("train", at(RESUME_SOLVER), "--snapshot", at(SOLVERSTATE)),)),
    "caffe/examples/cifar10/mean.binaryproto": ("BlobProto", (("check", at(CIFAR_NET)),
                                                              _scored(CIFAR_NET, "--allow-partial"))),
    f"{FIXTURES}/mnist5k_test_lmdb/data.mdb": ("Datum", (_scored(LENET),)),  # its records are Datums
}
# Data the shared nets name that Caffe's examples make (shape, records): random images, each with its mean
# (MNIST's are links to the fixtures' LMDBs).
MADE_DATA = {"examples/cifar10/cifar10_{}_lmdb": ((3, 32, 32), 4, "examples/cifar10/mean.binaryproto"),
             "examples/imagenet/ilsvrc12_{}_lmdb": ((3, 256, 256), 2, "data/ilsvrc12/imagenet_mean.binaryproto")}
RESUME_FIELDS = {"max_iter": "1001", "test_interval": "100000", "display": "0", "snapshot": "0",
                 "snapshot_prefix": '"../../work/lenet"'}  # one iteration past the state; the snapshot in work/


def writable_copy(source: Path, target: Path) -> Path:
    """A copy of a folder of ../shared (read-only there) that can be changed and removed."""
    shutil.copytree(source, target, symlinks=True, copy_function=shutil.copyfile)
    for folder, _, _ in os.walk(target):  # os.walk does not follow the links into the Caffe root
        os.chmod(folder, 0o755)
    return target


def _write_lmdb(folder: Path, images) -> None:
    import lmdb
    from netdef.data.datum import datum_bytes
    folder.parent.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(folder), map_size=1 << 30)
    with env.begin(write=True) as transaction:
        for index, image in enumerate(images):
            transaction.put(f"{index:08d}".encode(), datum_bytes(image, index % 10))
    env.close()


def _make_caffe_root(root: Path) -> None:
    import numpy as np
    from netdef.data.mean import write_binaryproto
    writable_copy(CAFFE, root)
    (root / "data").mkdir()
    for split in ("train", "test"):
        (root / f"examples/mnist/mnist_{split}_lmdb").symlink_to(f"../../fixtures/mnist5k_{split}_lmdb")
    for net_folder in {path.parent for path in root.rglob("*.prototxt")} - {root / "fixtures"}:
        for top in ("examples", "data"):  # netdef reads a net's paths from its folder, Caffe's from the root
            (net_folder / top).symlink_to(os.path.relpath(root / top, net_folder))
    generator = np.random.default_rng(0)
    for pattern, (shape, count, mean_file) in MADE_DATA.items():
        images = generator.integers(0, 256, (count, *shape), dtype=np.uint8)
        for split in ("train", "test"):
            _write_lmdb(root / pattern.format(split), images)
        (root / mean_file).parent.mkdir(parents=True, exist_ok=True)
        write_binaryproto(images.mean(0), root / mean_file)
    solver = (root / "fixtures/lenet_solver.prototxt").read_text(encoding="utf-8")
    for name, value in RESUME_FIELDS.items():
        solver = re.sub(rf"^{name}: .*$", f"{name}: {value}", solver, flags=re.M)
    (root / Path(RESUME_SOLVER).relative_to("caffe")).write_text(solver, encoding="utf-8")


@functools.lru_cache(maxsize=None)
def caffe_root() -> Path:
    """The unmutated Caffe root (made once a process, removed at its exit): a copy of ../shared/caffe with
    the data its nets name (MADE_DATA) and a solver resuming the fixtures' state (RESUME_FIELDS)."""
    if not CAFFE.is_dir():
        raise SystemExit(f"the prototxt and binary inputs need Caffe's files in {CAFFE}")
    folder = Path(tempfile.mkdtemp(prefix="netdef-fuzz-caffe-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    _make_caffe_root(folder / "caffe")
    return folder / "caffe"


# ---- running a case ----

@dataclass
class Outcome:
    kind: str  # accepted, clean, crash, hang, memory
    site: str = ""  # where a crash happened: innermost netdef frame and exception type
    detail: str = ""


def scratch_copy(inputs=INPUTS) -> Path:
    """A folder for mutated files to live in: copies of nets/ and solvers/, links to the data, the Caffe
    root (for the prototxt and binary inputs) and work/, each case's current folder."""
    folder = Path(tempfile.mkdtemp(prefix="netdef-fuzz-"))
    for name in ("nets", "solvers"):
        shutil.copytree(ROOT / name, folder / name)
    for name in ("data", "schema"):
        (folder / name).symlink_to(ROOT / name)
    if set(inputs) - {"yaml"}:
        writable_copy(caffe_root(), folder / "caffe")
    (folder / "work").mkdir()
    return folder


def _crash_site(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/netdef/" in f.filename]
    where = f"{Path(frames[-1].filename).relative_to(ROOT)}:{frames[-1].lineno} {frames[-1].name}" if frames else "?"
    return f"{where}: {type(exc).__name__}"


def _run_command(argv: list) -> Outcome:
    from netdef.cli import main
    from netdef.errors import NetdefError
    out = io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(out):
            status = main(["--debug", *argv])  # --debug: what escapes keeps its traceback
    except NetdefError as exc:
        return Outcome("clean", detail=exc.render()[-300:])
    except MemoryError as exc:
        return Outcome("memory", _crash_site(exc), "".join(traceback.format_exception(exc))[-3000:])
    except (Exception, SystemExit) as exc:  # noqa: BLE001  (anything that escapes is a finding)
        if isinstance(exc, SystemExit) and exc.code in (0, 2):
            return Outcome("accepted" if exc.code == 0 else "clean")
        return Outcome("crash", _crash_site(exc), "".join(traceback.format_exception(exc))[-3000:])
    if status == 0:
        return Outcome("accepted")
    if status == 2:
        return Outcome("clean", detail=out.getvalue()[-300:])
    return Outcome("crash", f"exit status {status}", out.getvalue()[-3000:])


def run_commands(commands, scratch: Path) -> Outcome:
    """Every command of a case, in the scratch folder's work/: the first finding, else clean if one
    command refused the file, else accepted."""
    os.chdir(scratch / "work")
    clean = None
    for argv in commands:
        outcome = _run_command([arg.replace("{scratch}", str(scratch)) for arg in argv])
        if outcome.kind not in ("accepted", "clean"):
            return outcome
        clean = clean or (outcome if outcome.kind == "clean" else None)
    return clean or Outcome("accepted")


def run_case(case: Case, scratch: Path, timeout: float = 2.0, memory: int = 1 << 30) -> Outcome:
    """Run one case in a forked child limited to `timeout` seconds and `memory` bytes more than now."""
    target = scratch / case.file
    original = target.read_bytes()
    data = case.data if isinstance(case.data, bytes) else case.data.encode("utf-8", "surrogatepass")
    target.write_bytes(data)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        try:
            limit = memory + address_space_now()
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            if "torch" in sys.modules:  # one thread: OpenMP's thread team does not survive a fork; 2 cores shared
                sys.modules["torch"].set_num_threads(1)
            outcome = run_commands(case.commands, scratch)
        except BaseException as exc:  # noqa: BLE001
            outcome = Outcome("crash", _crash_site(exc))
        with os.fdopen(write, "wb") as pipe:
            pipe.write(pickle.dumps(outcome))
        os._exit(0)
    os.close(write)
    try:
        return _wait(pid, read, timeout)
    finally:
        target.write_bytes(original)
        _empty(scratch / "work")


def address_space_now() -> int:
    """This process's virtual size, what RLIMIT_AS limits: a limit above it is `memory` more than now. (The
    resident size is far less in a process that loaded torch, whose mappings and thread stacks count; a late
    pytest process has grown to gigabytes of them.)"""
    from netdef.tools.resources import process_memory
    size = process_memory("VmSize")
    return size if size is not None else 2 * max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, 1 << 28)


def _empty(folder: Path) -> None:
    shutil.rmtree(folder)
    folder.mkdir()


def _wait(pid: int, read: int, timeout: float) -> Outcome:
    deadline = time.monotonic() + timeout
    chunks = []
    os.set_blocking(read, False)
    with os.fdopen(read, "rb") as pipe:
        while True:
            try:
                chunk = pipe.read()
            except BlockingIOError:
                chunk = None
            if chunk:
                chunks.append(chunk)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                rest = pipe.read()
                chunks.append(rest or b"")
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return Outcome("hang", f"over {timeout:g} s")
            time.sleep(0.002)
    data = b"".join(chunks)
    if not data:
        return Outcome("memory" if os.WIFSIGNALED(status) else "crash", f"child died (status {status})")
    return pickle.loads(data)


def pristine_commands(inputs) -> list:
    """Each input's commands on unmutated files."""
    commands = {"yaml": [("check", at("nets/lenet.yaml"))], "prototxt": list(_prototxt_commands(LENET)),
                "binary": [argv for _, argvs in BINARY_FILES.values() for argv in argvs]}
    return [argv for kind in inputs for argv in commands[kind]]


def warm_up(scratch: Path, inputs) -> None:
    """Import what every command of `inputs` needs once, before the forks, by running each on unmutated
    files; one that does not accept them stops the run (its cases would test nothing)."""
    import netdef.data.images  # noqa: F401  (ImageData's check imports torch with it: once here, not per case)
    here = os.getcwd()
    try:
        for argv in pristine_commands(inputs):
            outcome = run_commands([argv], scratch)
            if outcome.kind != "accepted":
                raise SystemExit(f"netdef {' '.join(argv)} does not accept the unmutated file: {outcome}")
    finally:
        os.chdir(here)
        _empty(scratch / "work")


def fuzz(cases: int, seed: int = 0, timeout: float = 2.0, memory: int = 1 << 30, save=None, progress=None,
         inputs=INPUTS):
    """Run `cases` cases of `inputs`; returns (counts by kind, {site: [case numbers]})."""
    scratch = scratch_copy(inputs)
    counts, sites = collections.Counter(), collections.defaultdict(list)
    try:
        warm_up(scratch, inputs)
        for number in range(cases):
            case = make_case(number, seed, inputs)
            outcome = run_case(case, scratch, timeout, memory)
            counts[outcome.kind] += 1
            if outcome.kind in ("crash", "hang", "memory"):
                key = f"{outcome.kind} {outcome.site}"
                sites[key].append(number)
                if save is not None:
                    _save(case, key, outcome, Path(save))
            if progress and (number + 1) % progress == 0:
                print(f"{number + 1} cases: {dict(counts)}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return counts, sites


def _save(case: Case, key: str, outcome: Outcome, folder: Path) -> None:
    """A finding's file, and what it was, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"case{case.number}_{Path(case.file).name}"
    data = case.data if isinstance(case.data, bytes) else case.data.encode("utf-8", "surrogatepass")
    (folder / name).write_bytes(data)
    (folder / f"{name}.txt").write_text(f"{case.file}\n{case.commands}\n{key}\n{outcome.detail}", encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inputs", type=_inputs, default=INPUTS,
                        help=f"comma-separated, of {', '.join(INPUTS)} (default all)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per case (default 2)")
    parser.add_argument("--memory-mb", type=int, default=1024, help="memory per case (default 1024 MB)")
    parser.add_argument("--save", metavar="DIR", help="keep the file of every finding in DIR")
    parser.add_argument("--progress", type=int, default=1000, help="print counts every N cases")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    counts, sites = fuzz(args.cases, args.seed, args.timeout, args.memory_mb << 20, args.save, args.progress,
                         args.inputs)
    elapsed = time.perf_counter() - start
    print(f"{args.cases} cases ({', '.join(args.inputs)}) in {elapsed:.0f} s: {counts['clean']} clean errors, "
          f"{counts['accepted']} accepted, {counts['crash']} crashes, {counts['hang']} hangs, "
          f"{counts['memory']} memory blowups ({len(sites)} distinct sites)")
    for site, numbers in sorted(sites.items(), key=lambda item: -len(item[1])):
        print(f"  {len(numbers):5d}  {site}  (cases {', '.join(map(str, numbers[:5]))})")
    return 1 if sites else 0


def _inputs(text: str) -> tuple:
    chosen = tuple(dict.fromkeys(name.strip() for name in text.split(",")))
    unknown = [name for name in chosen if name not in INPUTS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown input {', '.join(unknown)}: choose from {', '.join(INPUTS)}")
    return chosen


if __name__ == "__main__":
    sys.exit(main())
