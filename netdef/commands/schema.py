"""Print the JSON Schema of net or solver files (for editors: see the README)."""
import json

from ..schema import SCHEMAS


def add_arguments(parser):
    parser.add_argument("kind", choices=sorted(SCHEMAS), help="which schema")


def render(kind) -> str:
    return json.dumps(SCHEMAS[kind](), indent=1) + "\n"


def run(args) -> int:
    print(render(args.kind), end="")
    return 0
