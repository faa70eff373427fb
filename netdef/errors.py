"""One error type for every problem a user can cause, printed as FILE:LINE:COL: ..."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

MAX_REPORTED = 50


@dataclass(frozen=True, order=True)
class Pos:
    """A 1-based position in a source file."""
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass
class Problem:
    """One thing wrong with the user's input, with everything needed to explain it."""
    message: str
    pos: Pos | None = None
    layer: str | None = None
    layer_type: str | None = None
    expected: str | None = None
    found: str | None = None
    hint: str | None = None
    # Block instances the offending layer was expanded from, innermost first: (block, instance, pos).
    via: tuple = field(default=())

    def __str__(self) -> str:
        where = f"{self.pos}: " if self.pos else ""
        who = ""
        if self.layer is not None or self.layer_type is not None:
            who = (f"layer '{self.layer}'" if self.layer is not None else "unnamed layer") + \
                (f" ({self.layer_type})" if self.layer_type else "") + ": "
        text = where + who + self.message
        detail = [part for part in (f"expected {self.expected}" if self.expected else None,
                                    f"found {self.found}" if self.found else None) if part]
        if detail:
            text += " (" + ", ".join(detail) + ")"
        if self.hint:
            text += f"; {self.hint}"
        for block, instance, instance_pos in self.via:
            text += f"\n    in block '{block}', instance '{instance}' at {instance_pos}"
        return text

    def sort_key(self):
        return (self.pos or Pos("", 0, 0), self.message)


class ShapeError(Exception):
    """A shape rule found inputs it cannot accept; becomes a positioned Problem in the graph stage."""

    def __init__(self, message, expected=None, found=None, path=()):
        super().__init__(message)
        self.message, self.expected, self.found, self.path = message, expected, found, tuple(path)


class NetdefError(Exception):
    """Bad input: one or more problems. The CLI prints them and exits with status 2."""

    def __init__(self, problems):
        if isinstance(problems, (Problem, str)):
            problems = [problems]
        self.problems = [p if isinstance(p, Problem) else Problem(p) for p in problems]
        super().__init__(self.render())

    def render(self) -> str:
        """Every problem once, sorted by file and position; at most MAX_REPORTED per file."""
        shown, seen, per_file = [], set(), {}
        for problem in sorted(self.problems, key=Problem.sort_key):
            key = (problem.pos, problem.message)
            if key in seen:
                continue
            seen.add(key)
            file = problem.pos.file if problem.pos else ""
            per_file[file] = per_file.get(file, 0) + 1
            if per_file[file] <= MAX_REPORTED:
                shown.append(str(problem))
        for file, total in per_file.items():
            if total > MAX_REPORTED:
                shown.append(f"... and {total - MAX_REPORTED} more problems" + (f" in {file}" if file else ""))
        return "\n".join(shown)


def did_you_mean(word, candidates) -> str | None:
    """A 'did you mean' hint for a misspelt key, type or blob name, or None when nothing is close.
    Case is ignored when comparing, so Caffe's V1 spelling `INNER_PRODUCT` finds `InnerProduct`."""
    matches = close_matches(word, candidates)
    if not matches:
        return None
    return "did you mean " + " or ".join(f"'{m}'" for m in matches) + "?"


def close_matches(word, candidates) -> list:
    """Up to three candidates close to `word`, best first, ignoring case and underscores; candidates
    clearly worse than the best are left out ('kernel_szie' suggests 'kernel_size', not 'kernel_h')."""
    by_folded = {}
    for candidate in map(str, candidates):
        by_folded.setdefault(_fold(candidate), candidate)
    folded = _fold(str(word))
    matches = difflib.get_close_matches(folded, by_folded, n=3, cutoff=0.6)
    scores = [difflib.SequenceMatcher(None, folded, m).ratio() for m in matches]
    return [by_folded[m] for m, score in zip(matches, scores) if score >= scores[0] - 0.1]


def _fold(word: str) -> str:
    return word.lower().replace("_", "")


def count(n: int, noun: str) -> str:
    """'1 value', '3 values'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def show(value) -> str:
    """A value as the user wrote it, for 'found ...' texts (shortened past a line's worth)."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:50]) + f"... ({len(value):,} characters)"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {len(str(abs(value))) if value.bit_length() < 10_000 else 'thousands of'} digits"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)
