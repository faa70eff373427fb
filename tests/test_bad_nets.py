"""The malformed-input corpus: every file in tests/data/bad/ is checked by `netdef check` (in-process)
and must be rejected with exactly the problems its header announces.

Header format (leading comment lines of the file):

    # expect: 12:7: unknown key 'kernal_size' in convolution_param

one `# expect:` line per reported problem: LINE:COL of the problem in that file, then a substring of its
first line. A problem inside a block instance is followed by the instance it came from, which a
`# via:` line under its `# expect:` line announces:

    # via: block 'residual', instance 'stage2' at 21:11
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

BAD = Path(__file__).resolve().parent / "data" / "bad"
CASES = sorted([*BAD.glob("*.yaml"), *BAD.glob("*.prototxt")])  # Caffe text-format files too
EXPECT = re.compile(r"^# expect: (?P<line>\d+):(?P<col>\d+): (?P<text>.+)$")
VIA = re.compile(r"^# via: (?P<instance>block '[^']+', instance '[^']+') at (?P<line>\d+):(?P<col>\d+)$")
# One problem as the CLI prints it: FILE:LINE:COL: [layer 'x' (Type): | unnamed layer (Type): ]what ...
PROBLEM = re.compile(r"^(?P<file>[^\n]+?):(?P<line>\d+):(?P<col>\d+): "
                     r"(?:(?:layer '[^']*'|unnamed layer)(?: \([A-Za-z]+\))?: )?(?P<what>\S.*)$")
# Wording of jsonschema's own messages; none of it may reach a user.
JSONSCHEMA_TEXT = ("is not valid under any of the given schemas", "Failed validating", "is not of type",
                   "On instance", "additionalProperties", "$ref", "$defs", "does not match '^", "anyOf", "oneOf",
                   "is a required property", "Additional properties are not allowed", "{'type':")


def expectations(path: Path) -> list:
    """(line, col, text, via lines) of each `# expect:` line in the file's leading comments."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        expect, via = EXPECT.match(line), VIA.match(line)
        if expect:
            found.append((int(expect["line"]), int(expect["col"]), expect["text"], []))
        elif via:
            found[-1][3].append(f"    in block {via['instance'][len('block '):]} at {path}:{via['line']}:{via['col']}")
    return found


def problems_of(stderr: str) -> list:
    """The printed problems, each with its continuation lines ("    in block ...") joined on."""
    problems = []
    for line in stderr.splitlines():
        if line.startswith("    ") and problems:
            problems[-1] += "\n" + line
        elif line.strip():
            problems.append(line)
    return problems


def test_the_corpus_is_large_and_every_file_announces_its_problems():
    assert len(CASES) >= 45
    for case in CASES:
        assert expectations(case), f"{case.name} has no '# expect: LINE:COL: text' header"


@pytest.mark.parametrize("case", CASES, ids=lambda path: path.stem)
def test_bad_file_is_rejected_with_the_announced_problems(case, netdef_cli):
    status, out, err = netdef_cli("check", case)
    assert status == 2, f"expected exit status 2, got {status}; stdout: {out}"
    assert out == ""
    assert "Traceback" not in err
    problems = problems_of(err)
    for line, col, text, via in expectations(case):
        at = f"{case}:{line}:{col}: "
        matching = [p for p in problems if p.startswith(at) and text in p.splitlines()[0]]
        assert matching, f"no problem at {line}:{col} containing {text!r}; reported:\n{err}"
        assert matching[0].splitlines()[1:] == via, f"the instance lines differ; reported:\n{err}"
    assert len(problems) == len(expectations(case)), f"unexpected extra problems:\n{err}"


@pytest.mark.parametrize("case", CASES, ids=lambda path: path.stem)
def test_problem_reads_as_file_line_col_layer_what(case, netdef_cli):
    _, _, err = netdef_cli("check", case)
    for problem in problems_of(err):
        first = problem.splitlines()[0]
        match = PROBLEM.match(first)
        assert match, f"not FILE:LINE:COL: ...: {first}"
        assert match["file"] == str(case)
        for line in problem.splitlines()[1:]:
            assert re.match(r"^    in block '[^']+', instance '[^']+' at .+:\d+:\d+$", line), line


def test_checking_the_whole_corpus_at_once_reports_every_problem_and_no_jsonschema_text(netdef_cli):
    status, out, err = netdef_cli("check", *CASES)
    assert status == 2
    problems = problems_of(err)
    assert len(problems) == sum(len(expectations(case)) for case in CASES)
    for problem in problems:
        for raw in JSONSCHEMA_TEXT:
            assert raw not in problem, f"jsonschema's wording leaked: {problem}"
