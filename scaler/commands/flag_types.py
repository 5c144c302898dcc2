"""Flag values checked while the command line is parsed, so a bad one is one line, exit 2.

Every numeric flag takes one of the ``type=`` functions made here instead of bare ``int`` or
``float``: argparse then reports a refused value as ``scaler replay: argument --slo-ttft:
'0' is out of range: must be >= 0.01 and <= 3600 (...)``, one line naming the flag, the value
and what is accepted, before anything runs (no traceback from deep inside a model that got
a value it cannot use). Where a flag sets the same thing as a declared setting, the setting's
own check is used (``from_setting``), so the flag and the ConfigMap or trigger key accept
the same values.

``Parser`` is the ``scaler`` parser class: its errors are one line, each subcommand's help
has a description (its one-line summary unless given) and shows the defaults.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any, NoReturn

from scaler import schema
from scaler.schema import Check

FlagType = Callable[[str], Any]


class DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` after a flag's help, unless there is none or it says so itself."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default  # by identity: 0 == False, and a default of 0 is shown
        if default is None or default is False or default is argparse.SUPPRESS \
                or "default" in text.lower():
            return text
        return super()._get_help_string(action)


class _Commands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Subcommands whose description is their one-line summary unless given one."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if kwargs.get("description") is None and kwargs.get("help"):
            summary = str(kwargs["help"])
            kwargs["description"] = summary[:1].upper() + summary[1:] + "."
        parser: argparse.ArgumentParser = super().add_parser(name, **kwargs)
        return parser


class Parser(argparse.ArgumentParser):
    """The ``scaler`` command line: one-line errors, defaults in every help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsShown)
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _Commands)

    def error(self, message: str) -> NoReturn:
        """One line on stderr and exit 2 (argparse prints the usage block first)."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def checked(kind: type[int] | type[float], check: Check | None, accepted: str) -> FlagType:
    """A ``type=`` function: the text read as ``kind`` (finite) and held to ``check``."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {accepted}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {accepted}")
        reason = check(value) if check is not None else None
        if reason:
            raise argparse.ArgumentTypeError(f"{text!r} is out of range: {reason}")
        return value

    parse.__name__ = accepted  # argparse names the type by it in some messages
    return parse


def from_setting(cls: type[Any], name: str) -> FlagType:
    """A ``type=`` function accepting what the declared setting ``cls.name`` accepts."""
    (field,) = [f for f in schema.declared(cls) if f.name == name]

    def parse(text: str) -> Any:
        try:
            return schema.read(field, text, text=True)
        except schema.OutOfRange as exc:
            raise argparse.ArgumentTypeError(
                f"{text!r} is out of range: {exc.reason}") from None
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {field.accepted}") from None

    parse.__name__ = field.accepted
    return parse


def positive(kind: type[int] | type[float] = float, what: str = "a number") -> FlagType:
    """A finite number > 0."""
    return checked(kind, schema.above(0), f"{what} > 0")


def non_negative(kind: type[int] | type[float] = float, what: str = "a number") -> FlagType:
    """A finite number >= 0."""
    return checked(kind, schema.at_least(0), f"{what} >= 0")


# A share strictly between 0 and 1 (an SLO target of 1 would ask every request to be fast).
share = checked(float, lambda v: None if 0 < v < 1 else "must be > 0 and < 1",
                "a share in (0, 1), e.g. 0.99")

port = checked(int, schema.port, "a TCP port 0-65535 (0 = any free port)")
