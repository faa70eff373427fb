"""The README is the user's manual: every command's heading lists every flag its parser takes."""
import argparse
import re

from conftest import ROOT

from netdef.cli import make_parser

EVERY_COMMAND = {"--debug", "-h", "--help"}  # said once, in the README's paragraph on exit statuses


def command_parsers():
    subcommands = next(a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return subcommands.choices


def test_every_command_heading_lists_every_flag():
    readme = (ROOT / "README.md").read_text()
    headings = {m.group(1): m.group(0) for m in re.finditer(r"^### `netdef ([\w-]+)[^`]*`", readme, re.M)}
    missing = {}
    for name, parser in command_parsers().items():
        assert name in headings, f"no README heading for `netdef {name}`"
        for action in parser._actions:
            flags = set(action.option_strings) - EVERY_COMMAND
            if flags and not any(re.search(rf"{re.escape(flag)}\b", headings[name]) for flag in flags):
                missing.setdefault(name, []).append(sorted(flags)[0])
    assert not missing, missing
    assert "`--debug` (taken by every command)" in readme
