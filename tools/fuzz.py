"""Fuzz netdef's front end: mutated copies of the shipped nets and solvers through `netdef check`.

Each case takes one shipped file (nets/, nets/blocks/, solvers/), mutates it (keys deleted, duplicated or
swapped, values of other types, huge and negative numbers, template expressions, deep nesting, aliases,
tags, complex keys, truncation, random and non-printable bytes), writes it over its original in a scratch
copy of the repository's nets/ and solvers/ (so imports and net paths resolve), and runs `netdef check`
on it in a forked process with a time and memory limit. Exit 0 (accepted) and 2 (a clean error) are
fine; anything else is a finding: a traceback (crash, with the innermost netdef frame as its site), a
hang past the time limit, or a memory blowup.

    python tools/fuzz.py --cases 20000            # a summary line, then one line per distinct site
    python tools/fuzz.py --cases 500 --save DIR   # also keep each finding's file in DIR

tests/test_fuzz.py runs the same engine on a few hundred cases with a fixed seed.
"""
from __future__ import annotations

import argparse
import collections
import io
import os
import pickle
import random
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(str(p.relative_to(ROOT)) for folder in ("nets", "nets/blocks", "solvers")
                 for p in (ROOT / folder).glob("*.yaml"))

HUGE = [10 ** 20, 10 ** 30, 2 ** 63, 2 ** 31, -1, 0, -10 ** 9, 10 ** 9, 1e308, float("inf"), float("nan"), -0.0]
TEMPLATES = ["${9**9**9}", "${'a'*10**10}", "${[1]*10**9}", "${${i}}", "${" * 30 + "1" + "}" * 30, "${unknown}",
             "${1/0}", "${10**10**10}", "${i}", "${name[99]}", "${bottom.upper()}", "${().__class__}",
             "${max()}", "${len(5)}", "${[1,2][5]}", "${'x' * -1}", "${2 ** 10000}", "${str(10**5000)}",
             "${[[1] * 1000] * 1000}", "${'%s' % 1}", "${-(-(-(-(1))))}", "${(1,) * 10**8}", "${1 if}"]
OTHER_VALUES = [None, True, "text", 3.5, [], {}, [1, 2], {"a": 1}, "", [[[]]], {"type": "ReLU"}, "ReLU",
                [None], {"name": None}, "../../../../etc/passwd", "/dev/zero", "nets/lenet.yaml"]
TEXT_SNIPPETS = ["!!python/name:os.system", "!!python/object/apply:os.system ['true']", "!!binary aGVsbG8=",
                 "!!set {a, b}", "!!omap [a: 1]", "? [complex, key]\n: value\n", "? {a: 1}: 2\n", "\x00", "\x07",
                 "\ufeff", "\t", "&a [*a]", "*undefined", "<<: 5\n", "<<: [1, 2]\n", "%YAML 1.1\n---\n", "---\n",
                 "...\n", "{", "[", "'", '"', "|\n", ">-\n", "- - - - -\n", "key: &x value\nother: *x\n",
                 "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"), "\x1b[31m", "\r", "\x85"]


# ---- mutations ----

def _containers(value):
    """Every mapping and list inside a document (iteratively: mutated documents nest deeply)."""
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if isinstance(item, (dict, list)) and id(item) not in seen:
            seen.add(id(item))
            yield item
            stack.extend(item.values() if isinstance(item, dict) else item)


def _nested(depth, leaf, rng):
    for _ in range(depth):
        leaf = [leaf] if rng.random() < 0.5 else {"k": leaf}
    return leaf


def _new_value(rng: random.Random, old):
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(HUGE)
    if roll < 0.55:
        return rng.choice(TEMPLATES)
    if roll < 0.65:
        return _nested(rng.choice([5, 40, 120]), old, rng)
    if roll < 0.75 and isinstance(old, (int, float)) and not isinstance(old, bool):
        return -old if rng.random() < 0.5 else old * rng.choice([1000, 10 ** 6, 10 ** 12])
    return rng.choice(OTHER_VALUES)


def mutate_data(data, rng: random.Random):
    """A structural mutation of a parsed document (in place); returns the document."""
    containers = [c for c in _containers(data) if c]
    if not containers:
        return rng.choice(OTHER_VALUES)
    target = rng.choice(containers)
    keys = list(target) if isinstance(target, dict) else list(range(len(target)))
    key = rng.choice(keys)
    roll = rng.random()
    if roll < 0.2:
        del target[key]
    elif roll < 0.35 and len(keys) > 1:
        other = rng.choice(keys)
        target[key], target[other] = target[other], target[key]
    elif roll < 0.45 and isinstance(target, list):
        target.insert(key, target[key])  # a repeated layer or list item
    elif roll < 0.5 and isinstance(target, dict):
        target[rng.choice(["repeat", "use", "with", "if", "import", "blocks", "param", "include", "bottom",
                           "top", "type", "name", "args", "loss_weight", "propagate_down"])] = _new_value(rng, None)
    else:
        target[key] = _new_value(rng, target[key])
    return data


def mutate_text(text: str, rng: random.Random) -> str:
    """A mutation of the file's bytes: truncation, insertions of odd snippets, deleted or duplicated lines."""
    roll = rng.random()
    lines = text.splitlines(keepends=True)
    if roll < 0.2:
        return text[:rng.randrange(len(text) + 1)]
    if roll < 0.45:
        at = rng.randrange(len(text) + 1)
        return text[:at] + rng.choice(TEXT_SNIPPETS) + text[at:]
    if roll < 0.6 and lines:
        at = rng.randrange(len(lines))
        return "".join(lines[:at] + [lines[at]] + lines[at:])  # a duplicated line: duplicate keys
    if roll < 0.7 and lines:
        at = rng.randrange(len(lines))
        return "".join(lines[:at] + lines[at + 1:])
    if roll < 0.8:
        return "".join(chr(rng.randrange(0, 0x250)) if rng.random() < 0.02 else c for c in text)
    if roll < 0.85:
        depth = rng.choice([50, 500, 5000])
        at = rng.randrange(len(text) + 1)
        return text[:at] + "[" * depth + "1" + "]" * depth + text[at:]
    if roll < 0.9:
        laughs = "a: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]\n"
            for i in range(1, 9))
        return laughs + text
    return text + "\n" + rng.choice(TEXT_SNIPPETS) + "\n"


@dataclass
class Case:
    number: int
    file: str  # shipped file it mutates (relative to the repository)
    text: str


def make_case(number: int, seed: int = 0) -> Case:
    """Case `number` of a run: the same seed and number always give the same mutation."""
    rng = random.Random(f"{seed}:{number}")
    file = rng.choice(SHIPPED)
    text = (ROOT / file).read_text(encoding="utf-8")
    if rng.random() < 0.65:
        data = yaml.safe_load(text)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            data = mutate_data(data, rng)
        try:
            text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        except (yaml.YAMLError, RecursionError):
            text = mutate_text(text, rng)
    else:
        text = mutate_text(text, rng)
    return Case(number, file, text)


# ---- running a case ----

@dataclass
class Outcome:
    kind: str  # accepted, clean, crash, hang, memory
    site: str = ""  # where a crash happened: innermost netdef frame and exception type
    detail: str = ""


def scratch_copy() -> Path:
    """A folder with copies of nets/ and solvers/ and links to the data, for mutated files to live in."""
    folder = Path(tempfile.mkdtemp(prefix="netdef-fuzz-"))
    for name in ("nets", "solvers"):
        shutil.copytree(ROOT / name, folder / name)
    for name in ("data", "schema"):
        (folder / name).symlink_to(ROOT / name)
    return folder


def _crash_site(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/netdef/" in f.filename]
    where = f"{Path(frames[-1].filename).relative_to(ROOT)}:{frames[-1].lineno} {frames[-1].name}" if frames else "?"
    return f"{where}: {type(exc).__name__}"


def _run_check(path: Path) -> Outcome:
    from netdef.cli import main
    from netdef.errors import NetdefError
    out = io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(out):
            status = main(["--debug", "check", str(path)])  # --debug: what escapes keeps its traceback
    except NetdefError:
        return Outcome("clean")
    except MemoryError as exc:
        return Outcome("memory", _crash_site(exc), "".join(traceback.format_exception(exc))[-3000:])
    except (Exception, SystemExit) as exc:  # noqa: BLE001  (anything that escapes is a finding)
        if isinstance(exc, SystemExit) and exc.code in (0, 2):
            return Outcome("accepted" if exc.code == 0 else "clean")
        return Outcome("crash", _crash_site(exc), "".join(traceback.format_exception(exc))[-3000:])
    if status == 0:
        return Outcome("accepted")
    if status == 2:
        return Outcome("clean", detail=out.getvalue()[-300:])
    return Outcome("crash", f"exit status {status}", out.getvalue()[-3000:])


def run_case(case: Case, scratch: Path, timeout: float = 2.0, memory: int = 1 << 30) -> Outcome:
    """Run one case in a forked child limited to `timeout` seconds and `memory` bytes more than now."""
    target = scratch / case.file
    original = target.read_bytes()
    target.write_text(case.text, encoding="utf-8", errors="surrogatepass")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        try:
            usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            limit = memory + max(usage, 1 << 28) * 2
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            outcome = _run_check(target)
        except BaseException as exc:  # noqa: BLE001
            outcome = Outcome("crash", _crash_site(exc))
        with os.fdopen(write, "wb") as pipe:
            pipe.write(pickle.dumps(outcome))
        os._exit(0)
    os.close(write)
    try:
        return _wait(pid, read, timeout)
    finally:
        target.write_bytes(original)


def _wait(pid: int, read: int, timeout: float) -> Outcome:
    deadline = time.monotonic() + timeout
    chunks = []
    os.set_blocking(read, False)
    with os.fdopen(read, "rb") as pipe:
        while True:
            try:
                chunk = pipe.read()
            except BlockingIOError:
                chunk = None
            if chunk:
                chunks.append(chunk)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                rest = pipe.read()
                chunks.append(rest or b"")
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return Outcome("hang", f"over {timeout:g} s")
            time.sleep(0.002)
    data = b"".join(chunks)
    if not data:
        return Outcome("memory" if os.WIFSIGNALED(status) else "crash", f"child died (status {status})")
    return pickle.loads(data)


def fuzz(cases: int, seed: int = 0, timeout: float = 2.0, memory: int = 1 << 30, save=None, progress=None):
    """Run `cases` cases; returns (counts by kind, {site: [case numbers]})."""
    from netdef.cli import make_parser
    import netdef.data.images  # noqa: F401  (ImageData's check imports torch with it: once here, not per case)
    make_parser(only="check")  # imported once here, not in every forked case
    scratch = scratch_copy()
    counts, sites = collections.Counter(), collections.defaultdict(list)
    try:
        for number in range(cases):
            case = make_case(number, seed)
            outcome = run_case(case, scratch, timeout, memory)
            counts[outcome.kind] += 1
            if outcome.kind in ("crash", "hang", "memory"):
                key = f"{outcome.kind} {outcome.site}"
                sites[key].append(number)
                if save is not None:
                    Path(save).mkdir(parents=True, exist_ok=True)
                    stem = f"case{number}_{Path(case.file).stem}"
                    (Path(save) / f"{stem}.yaml").write_text(case.text, encoding="utf-8", errors="surrogatepass")
                    (Path(save) / f"{stem}.txt").write_text(f"{case.file}\n{key}\n{outcome.detail}", encoding="utf-8")
            if progress and (number + 1) % progress == 0:
                print(f"{number + 1} cases: {dict(counts)}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return counts, sites


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per case (default 2)")
    parser.add_argument("--memory-mb", type=int, default=1024, help="memory per case (default 1024 MB)")
    parser.add_argument("--save", metavar="DIR", help="keep the file of every finding in DIR")
    parser.add_argument("--progress", type=int, default=1000, help="print counts every N cases")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    counts, sites = fuzz(args.cases, args.seed, args.timeout, args.memory_mb << 20, args.save, args.progress)
    elapsed = time.perf_counter() - start
    print(f"{args.cases} cases in {elapsed:.0f} s: {counts['clean']} clean errors, {counts['accepted']} accepted, "
          f"{counts['crash']} crashes, {counts['hang']} hangs, {counts['memory']} memory blowups "
          f"({len(sites)} distinct sites)")
    for site, numbers in sorted(sites.items(), key=lambda item: -len(item[1])):
        print(f"  {len(numbers):5d}  {site}  (cases {', '.join(map(str, numbers[:5]))})")
    return 1 if sites else 0


if __name__ == "__main__":
    sys.exit(main())
