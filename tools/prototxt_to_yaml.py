"""Converts a Caffe net (.prototxt) to a netdef net file (.yaml): the migration path for Caffe users.

    python tools/prototxt_to_yaml.py deploy.prototxt              # YAML on standard output
    python tools/prototxt_to_yaml.py deploy.prototxt -o net.yaml  # to a file

Field names and values are kept as Caffe wrote them; `layer {}` entries become the `layers:` list and
a repeated field a list when it has more than one value. Run `netdef check` on the result: it names, at its line, anything netdef
does not support (a data backend, a layer type).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netdef.errors import NetdefError  # noqa: E402
from netdef.caffe.prototxt import load_prototxt  # noqa: E402

SCHEMA_COMMENT = "# yaml-language-server: $schema=../schema/net.schema.json\n"
def to_yaml(net: dict, source: str) -> str:
    body = yaml.safe_dump(net, sort_keys=False, default_flow_style=None, width=110)
    return f"{SCHEMA_COMMENT}# Converted from {source} by tools/prototxt_to_yaml.py.\n{body}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prototxt", help="Caffe net file (.prototxt)")
    parser.add_argument("-o", "--output", help="write to this file instead of standard output")
    args = parser.parse_args(argv)
    try:
        text = to_yaml(load_prototxt(args.prototxt, compact=True), Path(args.prototxt).name)
    except NetdefError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
