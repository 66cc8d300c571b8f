"""Every measured figure the README and the guides quote comes from a file under docs/benchmarks/.

The convention (docs/benchmarks/README.md): a block that quotes measured
figures sits right under a marker naming its source and stamp,

    <!-- figures: docs/benchmarks/accuracy.json; commit: 9fd3ca4; weights: weights/anchornet.pt fbc4e75f -->

and runs to the next blank line (one paragraph, one table or one list).
Every decimal number in it, outside code spans, must be a number of that
file rounded to the quoted decimals, and no number one off in its last digit
may be: so changing a quoted figure without its file fails here. A decimal
with a measurement unit (%, x, ms, s, frames/s, ...) outside such a block
fails too. Integers are not checked.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!--\s*figures:\s*(?P<body>.*?)\s*-->\s*$")
EXEMPT = re.compile(r"^<!--\s*not-measured:\s*\S.*-->\s*$")
#: A decimal number: not part of a word, a version (1.2.3) or a longer number.
DECIMAL = re.compile(r"(?<![\w.])(\d+\.\d+)(?![\d.]*\d)")
#: A decimal with a measurement unit: what may not appear outside a marked block.
MEASUREMENT = re.compile(r"(?<![\w.])\d+\.\d+(?:x\b| ?%| ?ms\b| ?s\b| ?[a-z]*/s\b)")
HEX = re.compile(r"\b[0-9a-f]{8,64}\b")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
COMMIT = re.compile(r"^[0-9a-f]{7,40}(-dirty)?$")
#: How a file's number may be quoted: as is or in millions (and in billions before " G", x 100 before a %).
FACTORS = (1.0, 1e-6)


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the marker
    source: str
    fields: dict[str, str]
    lines: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Figure:
    text: str  # as quoted, e.g. "93.0"
    percent: bool  # followed by %
    line: int
    billions: bool = False  # followed by " G"

    @property
    def decimals(self) -> int:
        return len(self.text.split(".")[1])


def guides(root: Path = ROOT) -> list[Path]:
    """The README and the user guides; decision records hold history and are not checked."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code, with code spans, link targets and HTML comments blanked."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced:
            continue
        yield number, _strip_code(line)


def _strip_code(line: str) -> str:
    line = re.sub(r"<!--.*?-->", " ", line)
    line = re.sub(r"`[^`]*`", " ", line)
    line = re.sub(r"\]\([^)]*\)", "]", line)  # link targets: file names, anchors
    return line


def parse(path: Path) -> tuple[list[Block], list[tuple[int, str]], list[str]]:
    """The marked blocks, the lines outside them, and errors in the markers themselves."""
    blocks: list[Block] = []
    outside: list[tuple[int, str]] = []
    errors: list[str] = []
    raw = path.read_text(encoding="utf-8").splitlines()
    current: Block | None = None
    exempt = False
    started = False
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        original = raw[number - 1]
        match = MARKER.match(original.strip())
        if match:
            current, exempt, started = _block(path, number, match["body"], errors), False, False
            if current:
                blocks.append(current)
            continue
        if EXEMPT.match(original.strip()):
            current, exempt, started = None, True, False
            continue
        if not line.strip():
            if (current or exempt) and not started:
                errors.append(f"{_where(path, number)}: a figures marker must sit directly above its block")
            current, exempt, started = None, False, False
            continue
        started = True
        if current:
            current.lines.append((number, line))
        elif not exempt:
            outside.append((number, line))
    if (current and not current.lines) or (exempt and not started):
        errors.append(f"{_where(path, len(raw))}: a figures marker at the end of the file marks nothing")
    return blocks, outside, errors


def _block(path: Path, number: int, body: str, errors: list[str]) -> Block | None:
    source, *rest = (part.strip() for part in body.split(";"))
    fields: dict[str, str] = {}
    for part in rest:
        key, sep, value = part.partition(":")
        if not sep or key.strip() not in ("commit", "weights", "keys") or not value.strip():
            errors.append(
                f"{_where(path, number)}: marker field {part!r} is not 'commit: ...', 'weights: ...' or 'keys: ...'"
            )
            continue
        fields[key.strip()] = value.strip()
    for required in ("commit", "weights"):
        if required not in fields:
            errors.append(f"{_where(path, number)}: marker for {source} lacks its stamp '{required}: ...'")
    if not source.startswith("docs/benchmarks/") or not source.endswith((".json", ".txt")):
        errors.append(f"{_where(path, number)}: a figures marker names a file under docs/benchmarks/, not {source!r}")
        return None
    return Block(path, number, source, fields)


def _where(path: Path, line: int) -> str:
    try:
        shown = path.relative_to(ROOT)
    except ValueError:
        shown = path
    return f"{shown}:{line}"


# -- the numbers of a source file


@dataclass
class Pool:
    """A source's numbers, sorted, each with its path and, for a number written in text, its decimals."""

    values: list[float]
    paths: list[str]
    places: list[int | None]  # None: a JSON number, any precision; else the decimals it was written with

    @classmethod
    def of(cls, numbers: list[tuple[float, str, int | None]]) -> Pool:
        ordered = sorted(numbers, key=lambda n: n[0])
        return cls([n[0] for n in ordered], [n[1] for n in ordered], [n[2] for n in ordered])

    def matches(self, quoted: Decimal, decimals: int, percent: bool, billions: bool = False) -> list[int]:
        """Indices of the numbers that round (half up) to `quoted` at `decimals` places."""
        half, found = 0.5 * 10.0**-decimals, []
        for factor in FACTORS + ((100.0,) if percent else ()) + ((1e-9,) if billions else ()):
            low, high = (float(quoted) - half) / factor, (float(quoted) + half) / factor
            slack = 1e-9 * max(1.0, abs(high))
            index = bisect.bisect_left(self.values, low - slack)
            while index < len(self.values) and self.values[index] < high - slack:
                written = self.places[index]
                if written is None or (factor == 1.0 and written >= decimals):
                    found.append(index)
                index += 1
        return sorted(set(found))


def assign(candidates: list[list[int]]) -> list[int]:
    """Figures left without a number of their own when each number may back one figure (bipartite matching)."""
    owner: dict[int, int] = {}

    def place(figure: int, seen: set[int]) -> bool:
        for number in candidates[figure]:
            if number not in seen:
                seen.add(number)
                if number not in owner or place(owner[number], seen):
                    owner[number] = figure
                    return True
        return False

    return [figure for figure in range(len(candidates)) if not place(figure, set())]


def text_numbers(text: str, where: str) -> Iterator[tuple[float, str, int | None]]:
    """Numbers written in text match only figures quoted with at most their decimals."""
    for match in re.finditer(r"(?<![\w.])\d+(?:\.\d+)?(?![\d.]*\d)", text):
        written = match.group()
        yield float(written), where, len(written.partition(".")[2])


def numbers(value: object, path: str = "") -> Iterator[tuple[float, str, int | None]]:
    """Every number in a JSON document, also those written inside its strings."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        if math.isfinite(value):
            yield abs(float(value)), path, None
    elif isinstance(value, str):
        yield from text_numbers(value, f"{path} (text)")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from numbers(item, f"{path}[{index}]")


def select(document: object, selector: str) -> Iterator[tuple[object, str]]:
    """The subtrees a selector names: keys joined by '/'; '*' is any key or index, and a list item
    is also named by its "key" or "name" field (accuracy.json's methods/patches_visual)."""
    nodes: list[tuple[object, str]] = [(document, "")]
    for part in selector.split("/"):
        found: list[tuple[object, str]] = []
        for node, path in nodes:
            items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
            for key, item in items:
                names = {str(key)} | (
                    {str(item[k]) for k in ("key", "name") if k in item}
                    if isinstance(item, dict) and isinstance(node, list)
                    else set()
                )
                if part == "*" or part in names:
                    found.append((item, f"{path}.{key}" if path else str(key)))
        nodes = found
    return iter(nodes)


@cache
def load(root: Path, source: str) -> object:
    path = root / source
    if source.endswith(".json"):
        return json.loads(path.read_text(encoding="utf-8"))
    return path.read_text(encoding="utf-8")


def pool_for(root: Path, block: Block) -> Pool:
    document = load(root, block.source)
    if isinstance(document, str):  # a .txt log: every number in it
        return Pool.of(list(text_numbers(document, "the text")))
    selectors = [s.strip() for s in block.fields.get("keys", "").split(",") if s.strip()]
    roots = [pair for s in selectors for pair in select(document, s)] if selectors else [(document, "")]
    return Pool.of([(v, f"{base}.{p}".strip("."), d) for node, base in roots for v, p, d in numbers(node)])


def figures(block: Block) -> Iterator[Figure]:
    for number, line in block.lines:
        for match in DECIMAL.finditer(line):
            after = line[match.end() : match.end() + 3]
            yield Figure(match.group(1), after.lstrip().startswith("%"), number, bool(re.match(r" ?G\b", after)))


def neighbours(text: str) -> list[Decimal]:
    """The figure one up and one down in its last digit."""
    quoted = Decimal(text)
    step = Decimal(1).scaleb(quoted.as_tuple().exponent)
    return [n for n in (quoted - step, quoted + step) if n >= 0]


# -- the checks


def check_figures(root: Path, block: Block) -> list[str]:
    """Each figure is a number of the file, no two figures lean on the same number, and no figure one off would pass."""
    if not (root / block.source).is_file():
        return [f"{_where(block.path, block.line)}: {block.source} does not exist"]
    pool, errors = pool_for(root, block), []
    if not pool.values:
        return [
            f"{_where(block.path, block.line)}: keys {block.fields.get('keys')!r} select no numbers in {block.source}"
        ]
    quoted = list(figures(block))
    candidates = [pool.matches(Decimal(f.text), f.decimals, f.percent, f.billions) for f in quoted]

    def where(figure: Figure) -> str:
        return f"{_where(block.path, figure.line)}: figure {figure.text}{' %' if figure.percent else ''}"

    for figure, found in zip(quoted, candidates):
        if not found:
            errors.append(f"{where(figure)} is not in {block.source} (no number there rounds to it)")
    if errors:
        return errors
    for index in assign(candidates):
        errors.append(f"{where(quoted[index])} is quoted more often than {block.source} holds it")
    if errors:
        return errors
    for index, figure in enumerate(quoted):
        for other in neighbours(figure.text):
            found = pool.matches(other, figure.decimals, figure.percent, figure.billions)
            if found and not assign(candidates[:index] + [found] + candidates[index + 1 :]):
                errors.append(
                    f"{where(figure)} would still pass as {other} ({block.source}: {pool.paths[found[0]]}); "
                    f"narrow the marker with 'keys: ...'"
                )
    return errors


def check_stamp(root: Path, block: Block) -> list[str]:
    where, errors = _where(block.path, block.line), []
    commit, weights = block.fields.get("commit", ""), block.fields.get("weights", "")
    document = load(root, block.source) if (root / block.source).is_file() else None
    if commit and not COMMIT.match(commit):
        errors.append(f"{where}: commit {commit!r} is not a short git hash")
    recorded = document.get("environment", {}).get("commit") if isinstance(document, dict) else None
    if commit and recorded:
        if not _same_commit(commit, recorded):
            errors.append(f"{where}: stamp commit {commit} but {block.source} was measured at {recorded}")
    elif commit and COMMIT.match(commit):
        history = git_output("log", "--format=%H", "--", block.source, root=root)
        shallow = (git_output("rev-parse", "--is-shallow-repository", root=root) or "").strip() == "true"
        if history and not shallow and not any(h.startswith(commit) for h in history.split()):
            errors.append(
                f"{where}: stamp commit {commit} never changed {block.source} "
                f"(git log -1 --format=%h -- {block.source})"
            )
    shas = {s for _, s in _strings(document)} if document is not None else set()
    shas = {s for s in shas if SHA256.match(s)}
    tokens = HEX.findall(weights)
    if shas:
        if not tokens:
            errors.append(f"{where}: weights stamp names no sha256 prefix, and {block.source} records sha256s")
        for token in tokens:
            if not any(s.startswith(token) for s in shas):
                errors.append(f"{where}: weights sha256 {token} is not in {block.source}")
    elif weights and COMMIT.match(commit or "-"):
        named = re.match(r"^(?P<file>\S+\.(?:pt|onnx|npz))\s+(?P<sha>[0-9a-f]{8,64})\b", weights)
        if named:  # the file's sha256 at the stamped commit, from git
            blob = _git_bytes("show", f"{commit.removesuffix('-dirty')}:{named['file']}", root=root)
            if blob is not None and not hashlib.sha256(blob).hexdigest().startswith(named["sha"]):
                errors.append(f"{where}: {named['file']} at {commit} does not have sha256 {named['sha']}")
    return errors


def _same_commit(a: str, b: str) -> bool:
    a_hash, b_hash = a.removesuffix("-dirty"), b.removesuffix("-dirty")
    return (a.endswith("-dirty") == b.endswith("-dirty")) and (a_hash.startswith(b_hash) or b_hash.startswith(a_hash))


def _strings(value: object, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def git_output(*args: str, root: Path) -> str | None:
    out = _git_bytes(*args, root=root)
    return None if out is None else out.decode("utf-8", "replace")


@cache
def _git_bytes(*args: str, root: Path) -> bytes | None:
    """git's output, or None where there is no git or no such history (a tarball, a shallow clone)."""
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def check_unmarked(path: Path, outside: list[tuple[int, str]]) -> list[str]:
    return [
        f"{_where(path, number)}: measured figure {match.group()!r} outside a figures block "
        f"(add '<!-- figures: docs/benchmarks/FILE; commit: ...; weights: ... -->' above it)"
        for number, line in outside
        for match in MEASUREMENT.finditer(line)
    ]


def check(paths: list[Path], root: Path = ROOT) -> list[str]:
    errors: list[str] = []
    for path in paths:
        blocks, outside, marker_errors = parse(path)
        errors += marker_errors
        for block in blocks:
            errors += check_figures(root, block) + check_stamp(root, block)
        errors += check_unmarked(path, outside)
    return errors
