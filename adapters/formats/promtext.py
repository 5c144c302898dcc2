"""Fast, selective parser for the Prometheus text exposition format (0.0.4).

Why not ``prometheus_client.parser``: it raises on the first malformed line (so one bad line
loses the whole page), it builds every family of the page although the scaler needs only a
handful, and it takes ~7-10 ms for one 440-line vLLM page. The scaler scrapes every pod every
few seconds on one event loop, so parsing must be cheap and must degrade line by line.

How it is fast: one compiled regular expression scans the whole page in C. It is anchored on the
newline before each sample line and, when ``names`` is given, on a prefix trie of the wanted
sample names, so unwanted lines (``# HELP``/``# TYPE``, comments, other families) are skipped
without a Python-level step. A line that matches the common shape (plain label values, no
escapes) is converted straight from the match groups; any other candidate line is handed to a
small character-level parser that either reads it (escapes, spaces around ``=``, ...) or
explains precisely why it is malformed. That slow parser defines the accepted language; the
fast expression only recognises a subset of it.

Accepted, like prometheus_client: ``# HELP``/``# TYPE``/plain comments, blank lines, an
optional timestamp after the value, label values with ``\\\\``, ``\\"`` and ``\\n`` escapes
(other backslash pairs are kept verbatim), commas and braces inside quoted values, spaces
around ``,`` and ``=``, a trailing comma in a label set, ``NaN``/``+Inf``/``-Inf``, ``%f``
floats and CRLF line ends. Stricter than prometheus_client (recorded as bad lines instead):
more than one token after the value, a leading comma or an empty term in a label set,
underscores in numbers, quoted (UTF-8) metric or label names, which 0.0.4 does not allow.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

__all__ = [
    "BadLine",
    "PageError",
    "ParsedPage",
    "Sample",
    "clear_label_cache",
    "parse",
    "parse_value",
]

_MAX_LINE_CHARS = 200

_METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

# The fast path: label pairs without escapes, reserved (``__``) names or spaces around ``=``.
_FAST_PAIR = r'(?!__)[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"'
_FAST_PAIR_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\\n]*)"')
_FAST_TAIL = (
    r"(?:\{((?:" + _FAST_PAIR + r"(?:,[ \t]*" + _FAST_PAIR + r")*,?)?)\})?"
    r"[ \t]+([^\s]+)(?:[ \t]+([^\s]+))?[ \t]*\r?$"
)


class PageError(ValueError):
    """A metrics page that was read but cannot be used (wrong server, impossible values)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample line: exact sample name (``foo_bucket``, ``foo_total``), labels, value."""

    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that could not be read; ``line`` is cut to about 200 characters."""

    lineno: int
    reason: str
    line: str


@dataclass(slots=True)
class ParsedPage:
    """Samples keyed by exact sample name, plus the lines that were skipped as malformed."""

    samples: dict[str, list[Sample]]
    bad_lines: list[BadLine]

    def get(self, name: str) -> list[Sample]:
        """Samples named ``name``, or an empty list when the page has none."""
        return self.samples.get(name, [])


def parse_value(token: str) -> float | None:
    """Read one number as the text format writes it; None when it is not a number."""
    if "_" in token:
        return None
    try:
        return float(token)
    except ValueError:
        return None


def _trie_alternation(names: list[str]) -> str:
    """A regex alternation for ``names`` that factors common prefixes (one branch per char)."""
    ends_here = "" in names
    by_first: dict[str, list[str]] = {}
    for name in names:
        if name:
            by_first.setdefault(name[0], []).append(name[1:])
    branches = [re.escape(ch) + _trie_alternation(rest) for ch, rest in sorted(by_first.items())]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if ends_here:
        return "(?:" + body + ")?"
    return body


@lru_cache(maxsize=64)
def _page_pattern(names: frozenset[str] | None) -> re.Pattern[str]:
    """The page scanner: group 1-4 = fast-path name, labels, value, timestamp; 5 = other line."""
    if names is None:
        name_re = _METRIC_NAME_RE.pattern
        other = r"([^#\s][^\n]*)"
    else:
        name_re = _trie_alternation(sorted(names))
        other = r"((?:" + name_re + r")(?=[ \t{\r]|$)[^\n]*)"
    fast = "(" + name_re + ")" + _FAST_TAIL
    return re.compile(r"\n[^\S\n]*(?:" + fast + "|" + other + ")", re.MULTILINE)


def _cut(line: str) -> str:
    return line if len(line) <= _MAX_LINE_CHARS else line[:_MAX_LINE_CHARS] + "..."


# Label sets seen on recent pages, parsed once: successive scrapes of the same pods repeat them
# verbatim, so the second page onwards skips label parsing. Values are read-only mappings
# because they are shared between samples. Cleared when it grows past the bound.
_LABEL_CACHE: dict[str, Mapping[str, str]] = {}
_LABEL_CACHE_MAX = 100_000
_NO_LABELS: Mapping[str, str] = MappingProxyType({})


def clear_label_cache() -> None:
    """Forget the label sets seen so far (benchmarks use it to time a first scrape)."""
    _LABEL_CACHE.clear()


def _fast_labels(labelset: str) -> Mapping[str, str]:
    """Labels of a set the fast expression accepted; ValueError on a duplicate name."""
    if not labelset:
        return _NO_LABELS
    pairs = _FAST_PAIR_RE.findall(labelset)
    labels = dict(pairs)
    if len(labels) != len(pairs):
        raise ValueError("duplicate label name")
    return MappingProxyType(labels)


class _LineError(Exception):
    """Internal: why one line is malformed."""


def _skip_blanks(line: str, pos: int) -> int:
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    return pos


def _read_label_value(line: str, pos: int) -> tuple[str, int]:
    """Read a quoted value starting after its opening quote; returns (value, pos after quote)."""
    out: list[str] = []
    end = len(line)
    while pos < end:
        ch = line[pos]
        if ch == '"':
            return "".join(out), pos + 1
        if ch == "\\" and pos + 1 < end:
            nxt = line[pos + 1]
            out.append({"\\": "\\", '"': '"', "n": "\n"}.get(nxt, "\\" + nxt))
            pos += 2
            continue
        out.append(ch)
        pos += 1
    raise _LineError("unterminated label value")


def _read_label_name(line: str, pos: int) -> tuple[str, int]:
    match = _LABEL_NAME_RE.match(line, pos)
    if match is None:
        if pos < len(line) and line[pos] == ",":
            raise _LineError("empty label term (two commas, or a comma after '{')")
        if pos < len(line) and line[pos] == '"':
            raise _LineError("quoted label names are not supported in text format 0.0.4")
        raise _LineError(f"invalid label name at {line[pos:pos + 20]!r}")
    name = match.group()
    if name.startswith("__"):
        raise _LineError(f"reserved label name {name!r}")
    return name, match.end()


def _read_labels(line: str, pos: int) -> tuple[dict[str, str], int]:
    """Read ``{...}`` starting after the ``{``; returns (labels, pos after ``}``)."""
    labels: dict[str, str] = {}
    while True:
        pos = _skip_blanks(line, pos)
        if pos >= len(line):
            raise _LineError("unterminated label set (no closing '}')")
        if line[pos] == "}":
            return labels, pos + 1
        name, pos = _read_label_name(line, pos)
        pos = _skip_blanks(line, pos)
        if pos >= len(line) or line[pos] != "=":
            raise _LineError(f"expected '=' after label name {name!r}")
        pos = _skip_blanks(line, pos + 1)
        if pos >= len(line) or line[pos] != '"':
            raise _LineError(f"value of label {name!r} is not quoted")
        value, pos = _read_label_value(line, pos + 1)
        if name in labels:
            raise _LineError(f"duplicate label name {name!r}")
        labels[name] = value
        pos = _skip_blanks(line, pos)
        if pos >= len(line):
            raise _LineError("unterminated label set (no closing '}')")
        if line[pos] == ",":
            pos += 1
        elif line[pos] != "}":
            raise _LineError(
                f"expected ',' or '}}' after the value of label {name!r}, got {line[pos]!r}")


def _read_value_and_timestamp(rest: str) -> float:
    tokens = rest.split()
    if not tokens:
        raise _LineError("missing value")
    if len(tokens) > 2:
        raise _LineError(f"unexpected text after the timestamp: {' '.join(tokens[2:])!r}")
    value = parse_value(tokens[0])
    if value is None:
        raise _LineError(f"value {tokens[0]!r} is not a number")
    if len(tokens) == 2 and parse_value(tokens[1]) is None:
        raise _LineError(f"timestamp {tokens[1]!r} is not a number")
    return value


def _parse_line(line: str) -> Sample:
    """Slow, exact parse of one stripped sample line; raises _LineError with the reason."""
    match = _METRIC_NAME_RE.match(line)
    if match is None:
        if line.startswith("{"):
            raise _LineError("missing metric name before '{' (quoted names are not supported)")
        first = line.split(maxsplit=1)
        raise _LineError(f"invalid metric name {(first[0] if first else line)[:40]!r}")
    name, pos = match.group(), match.end()
    labels: dict[str, str] = {}
    if pos < len(line) and line[pos] not in " \t{":
        raise _LineError(f"invalid character {line[pos]!r} in metric name {line[:pos + 1]!r}")
    pos = _skip_blanks(line, pos)
    if pos < len(line) and line[pos] == "{":
        labels, pos = _read_labels(line, pos + 1)
    return Sample(name, labels, _read_value_and_timestamp(line[pos:]))


class _Builder:
    """Collects samples and bad lines; tracks line numbers lazily (only bad lines need them)."""

    __slots__ = ("bad", "counted_line", "counted_pos", "samples", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[str, list[Sample]] = {}
        self.bad: list[BadLine] = []
        self.counted_pos = 0
        self.counted_line = 0

    def lineno(self, pos: int) -> int:
        """1-based line number of the line that follows the newline at ``pos`` of the text."""
        self.counted_line += self.text.count("\n", self.counted_pos, pos + 1)
        self.counted_pos = pos + 1
        return self.counted_line

    def add(self, sample: Sample) -> None:
        bucket = self.samples.get(sample.name)
        if bucket is None:
            self.samples[sample.name] = [sample]
        else:
            bucket.append(sample)

    def slow(self, pos: int, raw: str) -> None:
        line = raw.strip()
        try:
            self.add(_parse_line(line))
        except _LineError as exc:
            self.bad.append(BadLine(self.lineno(pos), str(exc), _cut(line)))


def parse(text: str, names: Collection[str] | None = None) -> ParsedPage:
    """Parse a text-format page; with ``names``, read only samples with those exact names.

    Never raises on page content: a malformed line becomes a :class:`BadLine` and parsing
    goes on. Lines whose name is not in ``names`` are skipped without being checked.
    """
    key = None if names is None else frozenset(name for name in names if name)
    if key is not None and not key:
        return ParsedPage({}, [])
    padded = "\n" + text
    out = _Builder(padded)
    samples = out.samples
    cache = _LABEL_CACHE
    if len(cache) > _LABEL_CACHE_MAX:
        cache.clear()
    for match in _page_pattern(key).finditer(padded):
        name, labelset, value_tok, ts_tok, other = match.groups()
        if other is not None:
            out.slow(match.start(), other)
            continue
        try:
            if "_" in value_tok:
                raise ValueError(value_tok)
            value = float(value_tok)
            if ts_tok is not None and parse_value(ts_tok) is None:
                raise ValueError(ts_tok)
            labels = cache.get(labelset)
            if labels is None:
                labels = cache[labelset] = _fast_labels(labelset)
        except ValueError:
            out.slow(match.start(), match.group()[1:])
            continue
        bucket = samples.get(name)
        if bucket is None:
            samples[name] = [Sample(name, labels, value)]
        else:
            bucket.append(Sample(name, labels, value))
    return ParsedPage(samples, out.bad)
