"""Summary tables and JSON: per layer, per block instance, and totals. A layer whose cost netdef does not
model has MACs and connections None: `-` in the table, null in JSON; block rows and totals add the
layers that count them."""
from __future__ import annotations

from ..front.infer import LayerInfo, NetInfo
from ..text import human, memory, shape_text
from ..text import table as table_lines

_FIELDS = ("params", "trainable", "macs", "connections", "memory")
_COUNTED = ("macs", "connections")  # None where not counted


def _add(total, value):
    """A sum that stays None while nothing counted has been added."""
    if value is None:
        return total
    return value if total is None else total + value


def _shape_text(shapes) -> str:
    return " ".join(shape_text(s) for s in shapes)


def block_rows(info: NetInfo) -> list:
    """One row per block instance (every nesting level), with its layers' figures summed."""
    rows = {}
    for layer in info.layers:
        for depth, (block, instance, pos) in enumerate(reversed(layer.via)):
            key = (instance, str(pos))
            row = rows.setdefault(key, {"name": instance, "block": block, "depth": depth, "layers": [],
                                        "tops": [], "shapes": [], **{f: None if f in _COUNTED else 0 for f in _FIELDS}})
            row["layers"].append(layer.name)
            row["tops"], row["shapes"] = list(layer.tops), [list(s) for s in layer.shapes]
            for f in _FIELDS:
                row[f] = _add(row[f], getattr(layer, f))
    return list(rows.values())


def top_level_rows(info: NetInfo) -> list:
    """The net as its file reads: plain layers, and each outermost block instance as one row."""
    instances = {row["name"]: row for row in block_rows(info) if row["depth"] == 0}
    rows, done = [], set()
    for layer in info.layers:
        if layer.via:
            instance = layer.via[-1][1]
            if instance not in done:
                done.add(instance)
                row = instances[instance]
                rows.append({**row, "type": f"block {row['block']}"})
            continue
        rows.append(_layer_dict(layer))
    return rows


def _layer_dict(layer: LayerInfo) -> dict:
    return {"name": layer.name, "type": layer.type, "bottoms": layer.bottoms, "tops": layer.tops,
            "shapes": [list(s) for s in layer.shapes], "params": layer.params, "trainable": layer.trainable,
            "macs": layer.macs, "connections": layer.connections, "memory": layer.memory,
            "block": [instance for _, instance, _ in reversed(layer.via)]}


def summary_dict(info: NetInfo) -> dict:
    return {
        "name": info.graph.name, "phase": info.graph.state.phase,
        "inputs": {blob: list(info.blob_shapes[blob]) for blob in info.graph.inputs},
        "outputs": list(info.graph.outputs),
        "layers": [_layer_dict(layer) for layer in info.layers],
        "blocks": block_rows(info),
        "total_params": info.total_params, "trainable_params": info.trainable_params,
        "total_macs": info.total_macs, "total_connections": info.total_connections,
        "activation_memory": info.total_memory,
    }


def _count(value) -> str:
    return "-" if value is None else f"{value:,}"


def summary_table(info: NetInfo, blocks: bool = False) -> str:
    """The human table: one row per layer (or per outermost block instance), then totals."""
    rows = top_level_rows(info) if blocks else [_layer_dict(layer) for layer in info.layers]
    header = ("layer", "type", "output shape", "params", "MACs", "connections", "memory")
    table = [header] + [(r["name"], r["type"], _shape_text(r["shapes"]), f"{r['params']:,}", _count(r["macs"]),
                         _count(r["connections"]), memory(r["memory"])) for r in rows]
    out = table_lines(table, right={3, 4, 5, 6})
    out.append("")
    uncounted = sorted({layer.type for layer in info.layers if layer.macs is None})
    out.append(f"{info.graph.name} ({info.graph.state.phase}): {info.total_params:,} parameters "
               f"({info.trainable_params:,} trainable), {info.total_macs:,} MACs per sample "
               f"({human(info.total_macs)}), activations {memory(info.total_memory)} per batch"
               + (f"; '-': not counted ({', '.join(uncounted)}: a cost netdef does not model)" if uncounted else ""))
    return "\n".join(line.rstrip() for line in out)
