"""Print the JSON Schema of net or solver files (for editors: see the README)."""
import json

from ..front.schema import net_schema
from ..train.config import solver_schema

SCHEMAS = {"net": net_schema, "solver": solver_schema}


def add_arguments(parser):
    parser.add_argument("kind", choices=sorted(SCHEMAS), help="which schema")


def render(kind) -> str:
    return json.dumps(SCHEMAS[kind](), indent=1) + "\n"


def run(args) -> int:
    print(render(args.kind), end="")
    return 0
