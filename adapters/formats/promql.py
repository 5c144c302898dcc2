"""PromQL text the scaler writes from values it did not choose: label matchers and strings.

A ``prometheusSelector`` comes from a ScaledObject and ends up inside the braces of a query
the scaler sends to the operator's Prometheus. Pasted as given, ``job="x"} or {namespace="b"``
would close the braces and read another namespace. So a selector is read as what it claims to
be, a comma-separated list of ``label op "value"`` matchers (ops ``=``, ``!=``, ``=~``,
``!~``; values in double or single quotes with Go's escapes, or in backquotes), and only that
is written back, every value escaped again. Anything else is refused with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OP = re.compile(r"=~|!~|!=|=")
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                   "v": "\v", "\\": "\\", "'": "'", '"': '"'}
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}


@dataclass(frozen=True)
class Matcher:
    """One label matcher: ``label op "value"`` (value unescaped)."""

    label: str
    op: str
    value: str

    def __str__(self) -> str:
        return f'{self.label}{self.op}"{escape(self.value)}"'


def escape(value: str) -> str:
    """``value`` as the inside of a double-quoted PromQL string: it can close nothing."""
    out = []
    for char in value:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """The matchers of ``text`` (no braces); ValueError saying where it is not one."""
    matchers: list[Matcher] = []
    at = _skip_space(text, 0)
    while at < len(text):
        label = _LABEL.match(text, at)
        if label is None:
            raise ValueError(f"expected a label name at offset {at}")
        at = _skip_space(text, label.end())
        op = _OP.match(text, at)
        if op is None:
            raise ValueError(f"expected =, !=, =~ or !~ after {label.group()!r}")
        value, at = _string(text, _skip_space(text, op.end()))
        matchers.append(Matcher(label.group(), op.group(), value))
        at = _skip_space(text, at)
        if at < len(text):
            if text[at] != ",":
                raise ValueError(f"expected ',' at offset {at}, found {text[at]!r}")
            at = _skip_space(text, at + 1)
    return tuple(matchers)


def render(matchers: tuple[Matcher, ...]) -> str:
    return ",".join(str(m) for m in matchers)


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


def _string(text: str, at: int) -> tuple[str, int]:
    """The string literal starting at ``at``, unescaped, and the offset after it."""
    quote = text[at] if at < len(text) else ""
    if quote not in ('"', "'", "`"):
        raise ValueError(f"expected a quoted value at offset {at}")
    if quote == "`":
        end = text.find("`", at + 1)
        if end < 0:
            raise ValueError("unterminated `string`")
        return text[at + 1:end], end + 1
    out: list[str] = []
    i = at + 1
    while i < len(text):
        char = text[i]
        if char == quote:
            return "".join(out), i + 1
        if char == "\n":
            break
        if char != "\\":
            out.append(char)
            i += 1
            continue
        decoded, i = _escape_sequence(text, i + 1)
        out.append(decoded)
    raise ValueError(f"unterminated string starting at offset {at}")


def _escape_sequence(text: str, at: int) -> tuple[str, int]:
    """The character a backslash escape stands for (``text[at]`` follows the backslash)."""
    code = text[at] if at < len(text) else ""
    if code in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[code], at + 1
    if code in _HEX_DIGITS:
        digits = text[at + 1:at + 1 + _HEX_DIGITS[code]]
        if len(digits) == _HEX_DIGITS[code] and all(c in "0123456789abcdefABCDEF"
                                                    for c in digits):
            point = int(digits, 16)
            if point <= 0x10FFFF and not 0xD800 <= point <= 0xDFFF:
                return chr(point), at + 1 + len(digits)
    if len(octal := text[at:at + 3]) == 3 and all(c in "01234567" for c in octal):
        return chr(int(octal, 8)), at + 3
    raise ValueError(f"unknown escape sequence at offset {at - 1}")
