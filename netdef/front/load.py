"""Stage 1, load: YAML text -> plain Python data plus the file position of every node.

PyYAML follows YAML 1.1, which reads `5e-4` as a string and keeps the last of two equal keys without a
word. The loader here reads every number the way a user means it and rejects duplicate keys.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import NetdefError, Pos, Problem
from .limits import MAX_FILE_BYTES, MAX_NESTING, MAX_NODES


class _Loader(yaml.SafeLoader):
    """SafeLoader whose float rule also accepts `1e-3`, `5E+4` and `.5` (YAML 1.2 style)."""


# libyaml's parser, where PyYAML was built with it, composes about ten times faster; syntax errors are
# still reported by the pure-Python parser, whose messages (and their tests) do not depend on the build.
_FastLoader = type("_FastLoader", (yaml.CSafeLoader,), {}) if yaml.__with_libyaml__ else _Loader

_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)

for _loader in {_Loader, _FastLoader}:
    _loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


@dataclass
class Source:
    """Where each part of a loaded document came from. Paths are tuples of keys and list indices."""
    file: str
    values: dict = field(default_factory=dict)  # path -> Pos of the value
    keys: dict = field(default_factory=dict)  # path -> Pos of the mapping key that names it

    def within(self, prefix) -> Source:
        """The positions of the part of the document at `prefix` (a net inside a solver), as its own document."""
        prefix, n = tuple(prefix), len(prefix)
        return Source(self.file, {path[n:]: pos for path, pos in self.values.items() if path[:n] == prefix},
                      {path[n:]: pos for path, pos in self.keys.items() if path[:n] == prefix})

    def pos(self, path, key=False) -> Pos | None:
        """Position of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            if key and path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            if not path:
                return None
            path = path[:-1]


def _mark(source: Source, mark) -> Pos:
    return Pos(source.file, mark.line + 1, mark.column + 1)


def _merge_keys(node, source: Source, problems: list, scalars: _Loader) -> int:
    """Resolve YAML merge keys (`<<: *defaults`) in place; returns how many leading pairs were merged in."""
    own = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
    try:
        scalars.flatten_mapping(node)
    except yaml.constructor.ConstructorError as exc:
        problems.append(Problem(f"invalid merge key '<<': {exc.problem}", _mark(source, exc.problem_mark),
                                expected="a mapping or a list of mappings (e.g. <<: *defaults)"))
        node.value = [(k, v) for k, v in node.value if k.tag != "tag:yaml.org,2002:merge"]
        return 0
    return len(node.value) - own


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _tag_problem(source: Source, node) -> Problem:
    """A tagged value (!!python/name:, !!set, ...): safe loading never runs it; netdef refuses it."""
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    return Problem(f"unsupported YAML tag '{tag}'", _mark(source, node.start_mark),
                   expected="plain YAML values (no tags such as !!python/...)")


class _Budget:
    """Nodes constructed so far: an alias repeats its whole subtree, so a few lines can stand for billions."""

    def __init__(self):
        self.nodes = 0

    def spend(self, source: Source, node):
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise NetdefError(Problem(f"the document has more than {MAX_NODES:,} values once its aliases are "
                                      "expanded", _mark(source, node.start_mark),
                                      hint="an alias (*name) repeats its anchor's whole value; is one nested "
                                           "in itself many times?"))


def _construct(node, path, source: Source, problems: list, scalars: _Loader, budget: _Budget):
    budget.spend(source, node)
    if len(path) > MAX_NESTING:
        raise NetdefError(Problem(f"values nested more than {MAX_NESTING} deep", _mark(source, node.start_mark)))
    source.values[path] = _mark(source, node.start_mark)
    if node.tag not in _PLAIN_TAGS and not isinstance(node, yaml.ScalarNode):
        problems.append(_tag_problem(source, node))
        return None
    if isinstance(node, yaml.MappingNode):
        result = {}
        first_seen = {}
        merged = _merge_keys(node, source, problems, scalars)
        merged_positions = {_mark(source, k.start_mark) for k, _ in node.value[:merged]}
        for index, (key_node, value_node) in enumerate(node.value):
            key = _construct(key_node, path + ("<key>",), source, problems, scalars, budget)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                problems.append(Problem("a mapping key must be a plain name",
                                        _mark(source, key_node.start_mark), found=str(key)))
                continue
            key_pos = _mark(source, key_node.start_mark)
            if key in first_seen and (index < merged or first_seen[key] in merged_positions):
                pass  # a `<<:` merged value: later entries and the mapping's own keys override it, as YAML says
            elif key in first_seen:
                first = first_seen[key]
                where = f"line {first.line}" + (f", column {first.col}" if first.line == key_pos.line else "")
                problems.append(Problem(f"duplicate key '{key}' (first at {where}); "
                                        "YAML would silently keep only the last one", key_pos))
                continue
            first_seen[key] = key_pos
            source.keys[path + (key,)] = key_pos
            result[key] = _construct(value_node, path + (key,), source, problems, scalars, budget)
        source.values.pop(path + ("<key>",), None)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, path + (i,), source, problems, scalars, budget) for i, item in enumerate(node.value)]
    try:
        return scalars.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError:  # a tag such as !!python/name: (never run: safe loader)
        problems.append(_tag_problem(source, node))
        return None


def _syntax_problem(exc: yaml.MarkedYAMLError, file: str) -> Problem:
    """PyYAML's syntax error at the place it was found, naming where the unfinished construct began
    (an unclosed `{` is only noticed on a later line)."""
    mark = exc.problem_mark or exc.context_mark
    pos = Pos(file, mark.line + 1, mark.column + 1) if mark else None
    context = exc.context or ""
    if context and exc.context_mark and exc.problem_mark and exc.context_mark.line != exc.problem_mark.line:
        context += f" (begun at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
    message = "invalid YAML: " + ": ".join(filter(None, [context, exc.problem]))
    hint = "indent with spaces: YAML does not allow tabs there" if "'\\t'" in (exc.problem or "") else None
    return Problem(message, pos, hint=hint)


def _reader_problem(exc: yaml.reader.ReaderError, text: str, file: str) -> Problem:
    """A character YAML does not allow (NUL, other control characters), at its line and column."""
    before = text[:exc.position]
    line = before.count("\n") + 1
    col = exc.position - (before.rfind("\n") + 1) + 1
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return Problem(f"invalid YAML: character U+{code:04X} is not allowed in a YAML file", Pos(file, line, col),
                   expected="printable text (tabs, newlines and Unicode letters are fine)")


def _nesting_problem(text: str, file: str) -> Problem:
    """Where a document nests deeper than MAX_NESTING, found from the parser's events (which, unlike
    composing, does not recurse)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_FastLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_NESTING:
                    return Problem(f"values nested more than {MAX_NESTING} deep", _mark(Source(file), event.start_mark))
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        pass
    return Problem(f"values nested more than {MAX_NESTING} deep", Pos(file, 1, 1))


def _compose(text: str, file: str):
    try:
        return yaml.compose(text, Loader=_FastLoader)
    except yaml.YAMLError:
        return yaml.compose(text, Loader=_Loader)


def load_yaml_text(text: str, file: str = "<string>"):
    """Parse YAML text; returns (data, Source). Syntax errors, duplicate keys and documents past the
    limits of netdef.front.limits raise NetdefError."""
    source = Source(file)
    try:
        node = _compose(text, file)
    except yaml.MarkedYAMLError as exc:
        raise NetdefError(_syntax_problem(exc, file)) from None
    except yaml.reader.ReaderError as exc:
        raise NetdefError(_reader_problem(exc, text, file)) from None
    except RecursionError:
        raise NetdefError(_nesting_problem(text, file)) from None
    blank = isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null" and not node.value
    if node is None or blank:  # nothing, or only `---`
        raise NetdefError(Problem("the file is empty", Pos(file, 1, 1)))
    problems: list = []
    data = _construct(node, (), source, problems, _Loader(""), _Budget())
    if problems:
        raise NetdefError(problems)
    return data, source


PROTOTXT_SUFFIXES = (".prototxt", ".pbtxt")


def read_text(path) -> str:
    """The text of a net or solver file, held to the size limit."""
    path = Path(path)
    try:
        if path.exists() and not path.is_file():  # a FIFO or device would block or never end
            raise NetdefError(Problem(f"{path} is not a regular file", expected="a YAML net or solver file"))
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise NetdefError(Problem(f"{path} is larger than {MAX_FILE_BYTES // 2 ** 20} MiB; a net or solver file "
                                      "is a few kilobytes", expected="a YAML net or solver file"))
        return raw.decode("utf-8")
    except FileNotFoundError:
        raise NetdefError(Problem(f"no such file: {path}")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NetdefError(Problem(f"cannot read {path}: {exc}")) from None


def load_yaml(path) -> tuple:
    """Read and parse a net or solver file; returns (data, Source). A Caffe .prototxt (net or solver) gives
    the same value as the YAML file it stands for, its positions those of the prototxt."""
    if "#" in str(path) and not Path(path).exists():
        return _load_part(*str(path).rsplit("#", 1))
    text = read_text(path)
    if Path(path).suffix.lower() in PROTOTXT_SUFFIXES:
        from ..caffe.prototxt import read_prototxt
        return read_prototxt(text, str(path))
    return load_yaml_text(text, str(path))


def _load_part(path: str, part: str) -> tuple:
    """FILE#a.0: the value at a (key a, item 0) in FILE, as its own document (a solver's inline net)."""
    data, source = load_yaml(path)
    value, taken = data, ()
    for key in (int(key) if key.isdigit() else key for key in part.split(".")):
        if isinstance(key, int) and isinstance(value, dict) and key == 0:
            continue  # a single inline net where Caffe allows several
        try:
            value, taken = value[key], taken + (key,)
        except (KeyError, IndexError, TypeError):
            raise NetdefError(Problem(f"{path} has no '{part}'", expected="a net there")) from None
    return value, source.within(taken)


@dataclass(frozen=True)
class Origin:
    """Where one (possibly block-expanded) layer was written: its file, its path there, and the chain of
    block instances it came from as ((block, instance name, Pos), ...), innermost first."""
    source: Source
    path: tuple
    via: tuple = ()

    def pos(self, rel=(), key=False) -> Pos | None:
        return self.source.pos(self.path + tuple(rel), key=key)
