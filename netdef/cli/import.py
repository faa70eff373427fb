"""Import Caffe prototxt files as netdef YAML: a net, or a solver and its nets (written beside it, the
solver's `net:` pointing at them). Comments are kept, V1 nets upgraded, fork fields mapped, and repeated
structure re-rolled into blocks (the result expands to the original layer for layer; `netdef expand`
shows it). Every other command also reads .prototxt files directly."""
import sys


def add_arguments(parser):
    parser.add_argument("prototxt", help="Caffe net or solver file (.prototxt)")
    parser.add_argument("-o", "--output", metavar="OUT.yaml",
                        help="the YAML file to write (default: the prototxt's name with .yaml, beside it)")


def run(args) -> int:
    from ..caffe.importer import import_prototxt
    files = import_prototxt(args.prototxt, args.output)
    for imported in files:
        _write(imported.path, imported.text)
        for note in imported.notes:
            print(note, file=sys.stderr)
        print(f"wrote {imported.path}")
    return 0


def _write(path, text):
    from ..errors import NetdefError, Problem
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise NetdefError(Problem(f"cannot write {path}: {exc.strerror or exc}")) from None
