"""Every flag is checked by the parser: a bad value is one line naming it, exit 2.

The walk introspects the real parser, so a numeric flag added later is covered without
touching this file (and one declared with bare ``int``/``float`` fails here).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scaler.commands.cli import _parser, main
from scaler.commands.flags import KNOBS, REPLAY_POLICIES, profile_flag

NOT_NUMERIC = (None, str, Path, str.upper, profile_flag)
BAD_VALUES = ("abc", "nan", "inf", "-1", "1e999")


def commands() -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def numeric_flags() -> Iterator[tuple[str, str]]:
    for name, parser in commands().items():
        for action in parser._actions:
            if action.option_strings and action.type not in NOT_NUMERIC:
                yield name, action.option_strings[-1]


def one_line_refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    return err


def test_the_walk_finds_the_numeric_flags_of_every_command() -> None:
    found = set(numeric_flags())
    for expected in [("serve", "--grpc-port"), ("serve", "--http-port"), ("replay", "--knob"),
                     ("replay", "--slo-target"), ("bench", "--gpus-per-node"),
                     ("demo", "--seed"), ("export-trace", "--days")]:
        assert expected in found


@pytest.mark.parametrize(("command", "flag"), sorted(set(numeric_flags())))
def test_every_numeric_flag_refuses_bad_values_in_one_line(command, flag, capsys) -> None:
    action = next(a for a in commands()[command]._actions if flag in a.option_strings)
    assert action.type not in (int, float), f"{command} {flag}: use a checked type " \
        "(scaler.commands.flag_types) so a bad value is refused with its range"
    for bad in BAD_VALUES:
        err = one_line_refusal([command, f"{flag}={bad}"], capsys)
        assert flag in err and bad in err, err


@pytest.mark.parametrize(("argv", "says"), [
    (["replay", "--knob", "0", "--policy", "reactive"], "must be > 0 and <= 1"),
    (["replay", "--knob", "-2", "--policy", "static"], "whole number >= 1"),
    (["replay", "--knob", "2.5", "--policy", "static"], "whole number >= 1"),
    (["replay", "--knob", "100", "--policy", "predictive"], "must be >= 0.5 and <= 10"),
    (["replay", "--knob", "1", "--policy", "oracle"],
     "out of range for --policy oracle (planned miss share)"),
    (["replay", "--policy", "reactive", "--policy", "static"], "replay runs one policy"),
    (["replay", "--slo-ttft", "0"], "--slo-ttft: '0' is out of range: must be >= 0.01"),
    (["replay", "--slo-target", "1.5"], "must be > 0 and < 1"),
    (["replay", "--slo-target", "1"], "must be > 0 and < 1"),
    (["replay", "--pod-startup", "-5"], "--pod-startup: '-5' is out of range"),
    (["bench", "--node-startup", "-5"], "--node-startup: '-5' is out of range"),
    (["replay", "--gpus-per-node", "0"], "--gpus-per-node: '0' is out of range"),
    (["replay", "--gpus-per-replica", "16", "--gpus-per-node", "8"],
     "16 is more than --gpus-per-node 8"),
    (["bench", "--profile", "llama-70b-tp4-h100", "--gpus-per-node", "2"],
     "--gpus-per-replica: 4 is more than --gpus-per-node 2"),
    (["replay", "--profile", "no-such-model"], "neither a shipped profile"),
    (["serve", "--log-level", "LOUD"], "invalid choice: 'LOUD'"),
    (["serve", "--grpc-port", "99999"], "must be a TCP port, 0-65535"),
    (["serve", "--http-port", "70000"], "must be a TCP port, 0-65535"),
])
def test_nonsense_is_refused_naming_the_rule(argv, says, capsys) -> None:
    assert says in one_line_refusal(argv, capsys)


def test_each_policy_states_its_knob_range() -> None:
    assert set(REPLAY_POLICIES) <= set(KNOBS)


def test_profile_takes_a_name_or_a_path_and_sets_the_gpus_per_replica() -> None:
    parser = commands()["replay"]
    shipped = Path(__file__).resolve().parents[2] / "scaler/profiles/llama-70b-tp4-h100.yaml"
    for given in ("llama-70b-tp4-h100", str(shipped)):
        args = parser.parse_args(["--profile", given])
        args.check(args)
        assert args.profile.name == "llama-70b-tp4-h100" and args.gpus_per_replica == 4
    args = parser.parse_args(["--gpus-per-replica", "2"])
    args.check(args)
    assert args.profile.name == "llama-8b-h100" and args.gpus_per_replica == 2


def test_log_level_is_case_insensitive() -> None:
    assert commands()["serve"].parse_args(["--log-level", "debug"]).log_level == "DEBUG"


def test_every_command_has_a_description_and_shows_its_defaults() -> None:
    for name, parser in commands().items():
        assert parser.description, name
        formatter = parser._get_formatter()
        for action in parser._actions:
            default = action.default  # by identity: a default of 0 must be shown too
            if action.option_strings and not (default is None or default is False
                                              or default == "==SUPPRESS=="):
                shown = formatter._get_help_string(action) or ""  # type: ignore[attr-defined]
                assert "default" in shown, (name, action.dest)


def test_a_refusal_from_the_installed_command_is_one_line_without_a_traceback() -> None:
    done = subprocess.run([sys.executable, "-c", "from scaler.commands.cli import main; "
                           "raise SystemExit(main())", "replay", "--slo-ttft", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "scaler replay: argument --slo-ttft: '0' is out of range: must be >= 0.01 and <= 3600 "
        "(see scaler replay --help)"]
