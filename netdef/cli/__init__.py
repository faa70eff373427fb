"""The `netdef` command: a thin layer over the Python API.

Each command is a module in netdef/cli/ with `add_arguments(parser)` and `run(args) -> int`;
it is imported only when used, so `netdef check` never pays for importing torch.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys

from ..errors import NetdefError, did_you_mean

# name -> one-line summary; the order is the help order.
COMMANDS = {
    "train": "train a net with a solver file (Caffe's `caffe train`)",
    "test": "score a trained net on its TEST phase (Caffe's `caffe test`)",
    "check": "validate net and solver files and infer every shape",
    "summary": "per-layer shapes, parameters, MACs, connections and memory",
    "expand": "print a net with its blocks expanded (a flat Caffe-style net)",
    "import": "import Caffe prototxt nets and solvers as netdef YAML, repeated structure as blocks",
    "schema": "print the JSON Schema of net or solver files",
    "time": "time forward and backward per layer (Caffe's `caffe time`)",
    "draw": "draw a net as SVG, HTML, DOT, PNG or PDF",
    "plot-lr": "plot a solver's learning-rate schedule",
    "plot": "plot training curves of runs (run folders, netdef or Caffe logs)",
    "report": "one HTML page of a run (or two side by side): configs, drawing, curves, figures",
    "parse-log": "a training log as CSV rows (Caffe's parse_log.py)",
    "export": "export a net's TEST phase to ONNX",
    "data": "download data sets (the only command that uses the network)",
}

EXIT_BAD_INPUT = 2
EXIT_INTERNAL_ERROR = 3
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader stopped early


def _available():
    """Commands whose module exists (the table may name commands still being built)."""
    found = {}
    for name, summary in COMMANDS.items():
        module = name.replace("-", "_")
        if importlib.util.find_spec(f"netdef.cli.{module}") is not None:
            found[name] = (module, summary)
    return found


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        invalid = "invalid choice: '"
        if invalid in message:
            word = message.split(invalid)[1].split("'")[0]
            hint = did_you_mean(word, _available())
            message += f"; {hint}" if hint else ""
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _command_named(argv) -> str | None:
    """The command word of a command line (global options take no values, so it is the first non-option)."""
    return next((word for word in argv if not word.startswith("-")), None)


@functools.lru_cache(maxsize=None)  # building the parsers costs more than checking a small net
def make_parser(only=None):
    """The argument parser. With `only`, just that command's module is imported (the others are listed
    by their summaries): `netdef check` must not wait for torch, which `train` imports."""
    from .. import __version__
    parser = _Parser(prog="netdef", description="Caffe-style nets in YAML, trained with PyTorch.")
    parser.add_argument("--version", action="version", version=f"netdef {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for bad input")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (module, summary) in _available().items():
        if only is not None and name != only:
            sub.add_parser(name, help=summary, description=summary)
            continue
        command = importlib.import_module(f"netdef.cli.{module}")
        command_parser = sub.add_parser(name, help=summary, description=command.__doc__ or summary)
        command_parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                    help="show tracebacks for bad input")
        command.add_arguments(command_parser)
        command_parser.set_defaults(run=command.run)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = make_parser(only=_command_named(argv) or "").parse_args(argv)
    try:
        status = args.run(args) or 0
        sys.stdout.flush()  # a reader that stopped early (`| head`) shows here, not at the interpreter's exit
        return status
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except NetdefError as exc:
        if getattr(args, "debug", False):
            raise
        print(exc.render(), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001  (the last resort: bad input must never show a bare traceback)
        if getattr(args, "debug", False):
            raise
        print(f"internal error in netdef ({type(exc).__name__}: {exc}); please report it with the command and "
              "its files, and run it again with --debug for the traceback", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


def _discard_stdout() -> None:
    """After a closed pipe: send what is still buffered nowhere, so that the interpreter's last flush does
    not fail again ("Exception ignored ... BrokenPipeError")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file (captured in-process)
        pass


if __name__ == "__main__":
    sys.exit(main())
