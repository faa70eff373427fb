"""Regenerates the README's reference tables (layers, solver fields) from the code.

    python tools/readme_tables.py          # rewrite README.md in place
    python tools/readme_tables.py --check  # exit 1 if README.md is stale (the tests run this)
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netdef.fields import Field  # noqa: E402
from netdef.layers import LAYERS  # noqa: E402
from netdef.train.config import SOLVER_FIELDS  # noqa: E402


def _default(field: Field) -> str:
    if field.required:
        return "required"
    if field.kind == "block" or field.default is None:
        return ""
    value = field.default
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fields(fields: dict) -> str:
    return ", ".join(f"`{name}`" + (f"={_default(f)}" if _default(f) else "") for name, f in fields.items())


def layer_table() -> str:
    rows = ["| type | what | role | bottoms → tops | parameter blocks and fields (default) |", "|---|---|---|---|---|"]
    for name in sorted(LAYERS):
        cls = LAYERS[name]
        arity = "{} → {}".format(*["{}{}".format(lo, "" if hi == lo else ("+" if hi is None else f"–{hi}"))
                                   for lo, hi in (cls.bottoms, cls.tops)])
        blocks = "; ".join(f"`{key}`: {_fields(fields)}" for key, fields in cls.blocks.items()) or "–"
        role = cls.role + (", net output" if cls.net_output else "") + ("" if cls.exportable else ", no ONNX")
        rows.append(f"| `{name}` | {cls.summary} | {role} | {arity} | {blocks} |")
    return "\n".join(rows)


def solver_table() -> str:
    rows = ["| field | default | meaning |", "|---|---|---|"]
    for name, field in SOLVER_FIELDS.items():
        choices = f" ({', '.join(field.choices)})" if field.choices else ""
        rows.append(f"| `{name}` | {_default(field)} | {field.doc}{choices} |")
    return "\n".join(rows)


TABLES = {"layers": layer_table, "solver": solver_table}


def render(text: str) -> str:
    for key, make in TABLES.items():
        pattern = re.compile(rf"(<!-- table:{key} -->)\n.*?(<!-- /table:{key} -->)", re.S)
        text = pattern.sub(lambda m: m.group(1) + "\n" + make() + "\n" + m.group(2), text)
    return text


def main(argv) -> int:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    fresh = render(text)
    if "--check" in argv:
        if fresh != text:
            print("README.md tables are stale: run python tools/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    readme.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
