"""`netdef import`: Caffe prototxt nets and solvers as netdef YAML files, comments kept, repeated structure
re-rolled into blocks (netdef.caffe.reroll) and checked: the imported net expands to the original layer for
layer, or it is written flat (and said so).

    written = import_prototxt("deploy.prototxt", "deploy.yaml")   # [(path, text, notes)] to write

A solver's nets are imported too, written beside the solver's YAML (an inline `net_param` as
<solver>_net.yaml), and its `net:`/`test_net:` point at them. Relative paths in a net (data sources, mean
files) that exist are rewritten for the new location; others are kept as written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import __version__
from ..errors import NetdefError, Problem
from ..fields import as_list
from ..front.expand import layers_with_paths_moved
from ..paths import caffe_path_mover, caffe_prefix_mover, exists
from ..text import counted
from .prototxt import Message, convert_net, convert_solver, is_solver, plain, read_prototxt_file
from .reroll import reroll

NET_FILE_FIELDS = ("net", "train_net", "test_net")


@dataclass
class Imported:
    """One file `netdef import` writes."""
    path: Path
    text: str
    notes: list = field(default_factory=list)


def _dump(value, flow=None) -> str:
    """YAML as a person writes it: block mappings, short lists and leaf mappings inline."""
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=flow, width=110, allow_unicode=True)


def _field(key, value) -> str:
    """One top-level field as YAML (`key: value`, never a one-entry flow mapping)."""
    text = _dump({key: value})
    return _dump({key: value}, flow=False) if text.startswith("{") else text


def _comment_lines(comments, indent="") -> str:
    return "".join(f"{indent}# {text}\n" if text else f"{indent}#\n" for _, text in comments)


def _comments_by_layer(message: Message, layers: list) -> tuple:
    """Each `#` comment of a parsed net with the layer it is in or precedes: (header, per layer, trailer)."""
    per_layer = [[] for _ in layers]
    header, trailer = [], []
    for pos, text in getattr(message, "comments", []):
        index = next((i for i, layer in enumerate(layers) if getattr(layer, "end", None) and pos <= layer.end), None)
        if index is None:
            trailer.append((pos, text))
        elif index == 0 and pos < layers[0].pos:
            header.append((pos, text))
        else:
            per_layer[index].append((pos, text))
    return header, per_layer, trailer


def _expanded_layers(text: str, file: Path) -> list:
    from ..front.expand import expand
    from ..front.load import load_yaml_text
    return expand(*load_yaml_text(text, str(file))).layers


def _render_net(name, extra: dict, blocks: dict, entries: list, comments: dict, header, trailer, origin) -> str:
    lines = [f"# Imported from {origin} by netdef import (netdef {__version__}).\n", _comment_lines(header)]
    top = ({"name": name} if name is not None else {}) | extra
    lines += [_field(key, value) for key, value in top.items()]
    if blocks:
        lines.append(_field("blocks", blocks))
    lines.append("layers:\n")
    for index, entry in enumerate(entries):
        lines.append(_comment_lines(comments.get(index, []), "  "))
        lines.append("".join("  " + line + "\n" for line in _dump([entry]).splitlines()))
    lines.append(_comment_lines(trailer))
    return "".join(lines)


def import_net(message: Message, origin: str, out: Path, source_dir: Path) -> Imported:
    """A parsed prototxt net as netdef YAML text, re-rolled where that expands to the same layers."""
    converted = convert_net(message, compact=True)
    layers = layers_with_paths_moved([plain(layer) for layer in converted["layers"]],
                                     caffe_path_mover(source_dir, out.parent))
    header, per_layer, trailer = _comments_by_layer(message, converted["layers"])
    extra = {key: plain(value) for key, value in converted.items() if key not in ("name", "layers")}
    name = converted.get("name")
    flat = _render_net(name, extra, {}, layers, dict(enumerate(per_layer)), header, trailer, origin)
    blocks, entries = reroll(layers)
    if not blocks:
        return Imported(out, flat)
    try:
        original = _expanded_layers(flat, out)
    except NetdefError:  # left for `netdef check` to explain; re-rolling a net that does not validate would hide it
        return Imported(out, flat, [f"{out}: written flat: the net does not validate (netdef check {out} says why)"])
    comments, position = {}, 0
    for index, entry in enumerate(entries):
        count = entry.get("repeat", 1) * len(blocks[entry["use"]]["layers"]) if "use" in entry else 1
        comments[index] = [c for layer_comments in per_layer[position:position + count] for c in layer_comments]
        position += count
    rolled = _render_net(name, extra, blocks, entries, comments, header, trailer, origin)
    try:
        same = _expanded_layers(rolled, out) == original
    except NetdefError:
        same = False  # a block that does not expand (a structure reroll misread)
    if not same:
        return Imported(out, flat, [f"{out}: repeated structure not re-rolled (its blocks did not expand to the "
                                    "same layers); written flat"])
    uses = sum(1 for entry in entries if "use" in entry)
    return Imported(out, rolled, [f"{out}: {counted(len(layers), 'layer')} as {counted(len(blocks), 'block')} used "
                                  f"{counted(uses, 'time')} and {counted(len(entries) - uses, 'plain layer')}"])


def _solver_nets(message: Message, path: Path, out: Path) -> tuple:
    """The nets a solver names (files and inline ones), imported beside `out`; the solver's net fields
    rewritten to point at them."""
    from ..train.config import INLINE_NET_FIELDS, load_solver
    config = load_solver(path)  # the solver itself is valid before anything is written
    written, fields = [], {}
    for net_field in NET_FILE_FIELDS:
        value = getattr(config, net_field)
        refs = [ref for ref in (list(value) if isinstance(value, tuple) else as_list(value)) if "#" not in ref]
        targets = []
        for ref in refs:
            resolved = config.resolve(ref)
            if not exists(resolved):
                raise NetdefError(Problem(f"net file not found: {ref}", config.pos(net_field),
                                          expected=f"a file at {resolved}"))
            if resolved.suffix.lower() in (".prototxt", ".pbtxt"):
                target = out.parent / (resolved.stem + ".yaml")
                written.append(import_net(read_prototxt_file(resolved), resolved.name, target, resolved.parent))
                targets.append(target.name)
            else:
                targets.append(os.path.relpath(resolved.resolve(), out.parent.resolve()))
        if targets:
            fields[net_field] = targets if net_field == "test_net" else targets[0]
    for inline, net_field in INLINE_NET_FIELDS.items():
        nets = as_list(message.get(inline))
        targets = []
        for index, net in enumerate(nets):
            suffix = f"_{net_field}" + (f"_{index + 1}" if len(nets) > 1 else "")
            target = out.parent / f"{out.stem}{suffix}.yaml"
            written.append(import_net(net, f"{path.name} ({inline})", target, path.parent))
            targets.append(target.name)
        if targets:
            fields[net_field] = targets + as_list(fields.get(net_field)) if net_field == "test_net" else targets[0]
    return written, fields


def import_solver(message: Message, path: Path, out: Path) -> list:
    """A parsed prototxt solver and its nets as netdef YAML files."""
    from ..train.config import INLINE_NET_FIELDS
    nets, net_fields = _solver_nets(message, path, out)
    converted = plain(convert_solver(message, compact=True))
    for inline in INLINE_NET_FIELDS:
        converted.pop(inline, None)
    if "snapshot_prefix" in converted:  # Caffe's is relative to its root: snapshots go where Caffe puts them
        converted["snapshot_prefix"] = caffe_prefix_mover(path.parent, out.parent)(converted["snapshot_prefix"])
    lines = [f"# Imported from {path.name} by netdef import (netdef {__version__}).\n"]
    comments = sorted(getattr(message, "comments", []))
    for key in net_fields:
        converted.setdefault(key, None)
    for key, value in converted.items():
        if key in message:  # the comments written above this field
            where = message.where(key)
            lines.append(_comment_lines([c for c in comments if c[0] < where]))
            comments = [c for c in comments if c[0] >= where]
        lines.append(_field(key, net_fields.get(key, value)))
    lines.append(_comment_lines(comments))
    return nets + [Imported(out, "".join(lines))]


def import_prototxt(path, output=None) -> list:
    """The files importing a .prototxt net or solver writes ([Imported], the named file last)."""
    path = Path(path)
    out = Path(output) if output else path.with_suffix(".yaml")
    if out.resolve() == path.resolve():
        raise NetdefError(Problem(f"the output {out} is the input file", hint="name another file with -o"))
    message = read_prototxt_file(path)
    if is_solver(message):
        return import_solver(message, path, out)
    return [import_net(message, path.name, out, path.parent)]
