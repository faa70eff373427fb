"""Repeated structure of a flat (Caffe) net re-rolled into netdef blocks: GoogLeNet's inception modules,
ResNet's bottleneck units, VGG's conv-relu pairs become one block each, used once per unit.

    blocks, entries = reroll(layers)     # layers: a flat net's layer dicts, in order

1. The layer list is cut into units where exactly one blob is alive (made before, read after; data
   layers' tops such as `label` do not count) and the next layer is not in place on it: each unit then
   reads one blob (`${bottom}`) and leaves one (`${top}`).
2. A unit's key is the longest string all its layer names share (`inception_3a`, `2a` in res2a_branch1,
   bn2a_branch1, ...); its template is its layers with the key written `${name}` and its input and output
   blobs `${bottom}` and `${top}`.
3. Units whose templates have the same layers, fields and wiring are instances of one block; the values
   that differ between them (num_output, ...) are the block's arguments.
4. A run of instances that chain (each reads the previous one's top), pass the same arguments and whose
   names count (3b1, 3b2, ...) becomes one `use:` with `repeat:`.

The caller checks that the expanded result equals the original layer for layer (netdef.caffe.importer).
"""
from __future__ import annotations

import copy
import json
import re
from difflib import SequenceMatcher

MIN_INSTANCES = 2  # a structure used once stays as it is
MIN_LAYERS = 2  # a single layer is its own best description
WIRING = ("name", "type", "bottom", "top")


def _names(layer, key) -> list:
    value = layer.get(key)
    return list(value) if isinstance(value, list) else ([] if value is None else [value])


def _cuts(layers) -> list:
    """Indices i such that a unit ends after layer i: one blob alive, and layer i+1 not in place."""
    sources = {top for layer in layers if not _names(layer, "bottom") for top in _names(layer, "top")}
    first_made, last_read = {}, {}
    for i, layer in enumerate(layers):
        for blob in _names(layer, "bottom"):
            last_read[blob] = i
        for blob in _names(layer, "top"):
            first_made.setdefault(blob, i)
    cuts = []
    for i in range(len(layers) - 1):
        alive = [b for b, made in first_made.items() if made <= i < last_read.get(b, -1) and b not in sources]
        following = layers[i + 1]
        in_place = bool(_names(following, "top")) and _names(following, "top") == _names(following, "bottom")
        if len(alive) == 1 and not in_place:
            cuts.append((i, alive[0]))
    return cuts


def _common_key(names) -> str:
    """The longest substring of every name, trimmed to begin and end at a letter or digit."""
    key = names[0]
    for name in names[1:]:
        match = SequenceMatcher(None, key, name, autojunk=False).find_longest_match(0, len(key), 0, len(name))
        key = key[match.a:match.a + match.size]
    key = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", key)
    return key if key and all(key in name for name in names) else ""


def _template_string(text, key):
    return text.replace(key, "${name}", 1) if isinstance(text, str) and key and key in text else text


def _template(layers, key, bottom, top) -> list:
    """A unit's layers with its key, input and output written as block templates."""
    out = []
    for layer in layers:
        layer = copy.deepcopy(layer)
        for field in ("bottom", "top"):
            if field in layer:
                values = [("${bottom}" if b == bottom and field == "bottom" else "${top}" if b == top
                           else _template_string(b, key)) for b in _names(layer, field)]
                layer[field] = values if isinstance(layer[field], list) else values[0]
        layer["name"] = _template_string(layer["name"], key)
        out.append(layer)
    return out


def _leaves(value, path=()):
    """(path, value) of every leaf; a list of scalars is one leaf."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list) and (any(isinstance(item, (dict, list)) for item in value)
                                      or (path and path[0] in ("bottom", "top"))):
        for index, item in enumerate(value):
            yield from _leaves(item, path + (index,))
    else:
        yield path, value


def _signature(template) -> str:
    """What instances of one block share: wiring, types and the shape of every field (not its value)."""
    def shape(value, path):
        if isinstance(value, dict):
            return {k: shape(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
            return [shape(v, path + (i,)) for i, v in enumerate(value)]
        return value if path and path[0] in WIRING else type(value).__name__ + ("[]" if isinstance(value, list) else "")
    return json.dumps([shape(layer, ()) for layer in template], sort_keys=True)


def _set(container, path, value):
    for key in path[:-1]:
        container = container[key]
    container[path[-1]] = value


class Unit:
    """One contiguous run of layers reading one blob and leaving one."""

    def __init__(self, start, layers, bottom, top):
        self.start, self.layers, self.bottom, self.top = start, layers, bottom, top
        self.key = _common_key([layer["name"] for layer in layers])
        self.template = _template(layers, self.key, bottom, top) if self.key else None

    @property
    def end(self):
        return self.start + len(self.layers)


def _units(layers) -> list:
    cuts = _cuts(layers)
    units, start, bottom = [], 0, None
    for index, alive in cuts + [(len(layers) - 1, None)]:
        # A side branch (GoogLeNet's auxiliary classifiers) leaves its input alive and makes no top of its own:
        # a block must produce its ${top}, so it stays as it is.
        if bottom is not None and alive not in (None, bottom) and index + 1 - start >= MIN_LAYERS:
            units.append(Unit(start, layers[start:index + 1], bottom, alive))
        start, bottom = index + 1, alive
    return units


def _arg_name(template_layer, path, taken) -> str:
    """A readable argument name: the field and the layer's own part of its name (num_output_3x3_reduce)."""
    own = re.sub(r"\W+", "_", template_layer["name"].replace("${name}", "")).strip("_")
    base = "_".join(str(p) for p in path[-1:]) + (f"_{own}" if own else "")
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


class _NoBlock(Exception):
    """Instances that one block cannot describe."""


def _as_expression(template: str) -> str:
    """A template string as an expression of the block's names: 'res${name}_b' -> ('res' + name + '_b')."""
    parts = re.split(r"\$\{([^}]*)\}", template)
    terms = [repr(part) if i % 2 == 0 else f"({part})" for i, part in enumerate(parts) if part or i % 2]
    return "(" + " + ".join(terms or ["''"]) + ")"


def _layer_value(layer, path, missing):
    leaves = dict(_leaves(layer))
    return leaves.get(path, missing)


def _block(units, aligned=None, flag=None) -> tuple:
    """A block from the instances of one structure: (block dict, [with dict per unit]). With `aligned`
    (per unit, its layers at the block's positions, None where it lacks one), the layers some units lack
    carry `if: ${flag}`, and wiring that differs between the units with and without them is chosen by it."""
    aligned = aligned or [unit.template for unit in units]
    template = copy.deepcopy(next(rows for rows in aligned if all(row is not None for row in rows)))
    full = [all(row is not None for row in rows) for rows in aligned]
    withs = [({flag: has} if flag else {}) for has in full]
    args = {flag: None} if flag else {}
    arg_values = {}  # argument -> {unit index: its value}
    missing = object()
    for index, layer in enumerate(template):
        present = [k for k, rows in enumerate(aligned) if rows[index] is not None]
        for path, _ in list(_leaves(layer)):
            values = {k: _layer_value(aligned[k][index], path, missing) for k in present}
            if missing in values.values():
                raise _NoBlock(path)
            if len({json.dumps(v, sort_keys=True) for v in values.values()}) == 1:
                continue
            if path[0] in WIRING:
                _set(layer, path, _chosen(values, full, flag))
                continue
            arg = next((name for name, given in arg_values.items()  # one argument for values that always agree
                        if all(k in given and given[k] == value for k, value in values.items())), None)
            if arg is None:
                arg = _arg_name(layer, path, args)
                args[arg], arg_values[arg] = None, values
                for k, value in values.items():
                    withs[k][arg] = value
            _set(layer, path, "${" + arg + "}")
        if len(present) < len(units):
            layer["if"] = "${" + flag + "}"
    for arg, given in arg_values.items():
        if len(given) < len(units):  # used only by layers some units lack: the others need not give it
            args[arg] = next(iter(given.values()))
    block = {"args": args, "layers": template} if args else {"layers": template}
    return block, withs


def _chosen(values: dict, full: list, flag) -> str:
    """One wiring string for every instance: the same one, or chosen by the flag."""
    with_flag = {values[k] for k in values if full[k]}
    without = {values[k] for k in values if not full[k]}
    if flag is None or len(with_flag) != 1 or len(without) != 1 or not all(isinstance(v, str) for v in values.values()):
        raise _NoBlock(values)
    return "${" + f"{_as_expression(with_flag.pop())} if {flag} else {_as_expression(without.pop())}" + "}"


def _layer_signatures(template) -> list:
    return [_signature([{k: v for k, v in layer.items() if k not in ("bottom", "top")}]) for layer in template]


def _merge(long_units, short_units):
    """The short structure's layers as a part of the long one's (ResNet's identity unit inside its projection
    unit): (units, aligned, flag) for one block, or None."""
    longer, shorter = _layer_signatures(long_units[0].template), _layer_signatures(short_units[0].template)
    if not len(longer) / 2 < len(shorter) < len(longer) or len(short_units) < MIN_INSTANCES:
        return None  # only a structure used often that is most of the longer one is a variant of it
    matcher = SequenceMatcher(None, longer, shorter, autojunk=False)
    pairs = [(a + k, b + k) for a, b, size in matcher.get_matching_blocks() for k in range(size)]
    if len(pairs) != len(shorter):
        return None
    units = sorted(long_units + short_units, key=lambda unit: unit.start)
    aligned = []
    for unit in units:
        if unit in long_units:
            aligned.append(unit.template)
        else:
            rows = [None] * len(longer)
            for a, b in pairs:
                rows[a] = unit.template[b]
            aligned.append(rows)
    extra = next(layer for (i, layer) in enumerate(long_units[0].template) if i not in dict(pairs))
    own = re.sub(r"\W+", "_", extra["name"].replace("${name}", "")).strip("_")
    return units, aligned, f"has_{own}" if own else "has_extra"


def _counted(names):
    """A name template for names that differ in one counted part (3b1, 3b2 ...: '3b${i}'), or None."""
    first, last = names[0], names[-1]
    prefix = 0
    while prefix < min(len(first), len(last)) and first[prefix] == last[prefix]:
        prefix += 1
    while prefix and first[prefix - 1].isdigit() and first[prefix:prefix + 1].isdigit():  # 3b9, 3b10: whole numbers
        prefix -= 1
    stem, start = first[:prefix], first[prefix:]
    for offset_name, render in (("i", str), ("letter", lambda k: chr(ord("a") + k - 1))):
        offsets = [render(k) for k in range(1, len(names) + 1)]
        if [stem + part for part in offsets] == names:
            return stem + "${" + offset_name + "}"
    if len(start) == 1 and start.islower():  # b, c, ...: letters from a later one than a
        skip = ord(start) - ord("a")
        if [stem + chr(ord(start) + k) for k in range(len(names))] == names and skip + len(names) <= 26:
            index = "i" if skip == 1 else f"i + {skip - 1}"
            return stem + "${'abcdefghijklmnopqrstuvwxyz'[" + index + "]}"
    if start.isdigit():
        base = int(start)
        if [f"{stem}{base + k}" for k in range(len(names))] == names:
            return stem + "${i + " + str(base - 1) + "}" if base != 1 else stem + "${i}"
    return None


def _uses(block_name, units, withs) -> list:
    """The `use:` entries of one block's instances, chained runs as one entry with `repeat:`."""
    entries, k = [], 0
    while k < len(units):
        run = k + 1
        while (run < len(units) and units[run].start == units[run - 1].end and units[run].bottom == units[run - 1].top
               and withs[run] == withs[k]):
            run += 1
        entry = {"use": block_name, "name": units[k].key, "bottom": units[k].bottom, "top": units[k].top}
        names = _counted([unit.key for unit in units[k:run]]) if run - k > 1 else None
        tops = _counted([unit.top for unit in units[k:run]]) if names else None
        if names and tops:
            entry.update(name=names, top=tops, repeat=run - k)
        else:
            run = k + 1
        if withs[k]:
            entry["with"] = withs[k]
        entries.append((units[k].start, units[run - 1].end, entry))
        k = run
    return entries


def _block_name(units, taken) -> str:
    stem = re.sub(r"[^A-Za-z_]+", "_", re.sub(r"\d+[A-Za-z]?\d*$", "", units[0].key)).strip("_").lower()
    name, n = stem or "unit", 1
    while name in taken:
        n += 1
        name = f"{stem or 'unit'}{n}"
    return name


def _families(groups) -> list:
    """(units, aligned, flag) per block: each group of equal units, a group whose layers are part of a
    longer group's joined to it."""
    groups = sorted(groups, key=lambda units: -len(units[0].layers))
    families, joined = [], set()
    for i, long_units in enumerate(groups):
        if i in joined:
            continue
        for j in range(i + 1, len(groups)):
            merged = None if j in joined else _merge(long_units, groups[j])
            if merged is not None:
                families.append(merged)
                joined.add(j)
                break
        else:
            if len(long_units) >= MIN_INSTANCES:
                families.append((long_units, None, None))
    return families


def _plain_wiring(layer) -> bool:
    """Whether a layer's name, type, bottoms and tops are text, as re-rolling reads them."""
    return (isinstance(layer, dict) and isinstance(layer.get("name"), str)
            and all(isinstance(value, str) for field in WIRING[1:] for value in _names(layer, field)))


def reroll(layers) -> tuple:
    """(blocks, entries): the blocks found and the net's new layer list, where each entry is either an
    original layer (the same dict) or a `use:` entry standing for a run of layers. A net with a layer whose
    wiring is not text (`name` written twice is a list) is left as it is, for `netdef check` to explain."""
    if not all(_plain_wiring(layer) for layer in layers):
        return {}, list(layers)
    groups: dict = {}
    for unit in _units(layers):
        if unit.template is not None:
            groups.setdefault(_signature(unit.template), []).append(unit)
    blocks, spans = {}, []
    for units, aligned, flag in _families(list(groups.values())):
        try:
            block, withs = _block(units, aligned, flag)
        except _NoBlock:
            continue
        name = _block_name(units, blocks)
        blocks[name] = block
        spans += _uses(name, units, withs)
    spans.sort(key=lambda span: span[0])
    entries, index = [], 0
    for start, end, entry in spans:
        entries += layers[index:start]
        entries.append(entry)
        index = end
    return blocks, entries + layers[index:]
