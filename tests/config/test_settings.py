"""Settings files: defaults, every bad key named, nothing partly applied."""

from __future__ import annotations

import pytest

from scaler.commands.cli import main
from scaler.config.load import ConfigError, describe, parse_config
from scaler.config.settings import ServiceConfig


def test_empty_document_gives_defaults():
    assert parse_config("") == ServiceConfig()
    assert ServiceConfig().server.grpc_port == 9090
    assert ServiceConfig().server.http_port == 8080


def test_values_are_read():
    config = parse_config("scrape:\n  interval_s: 2\n  timeout_s: 0.5\nserver:\n  grpc_port: 0\n")
    assert config.scrape.interval_s == 2.0
    assert config.scrape.timeout_s == 0.5
    assert config.server.grpc_port == 0


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("scrape:\n  interval_s: -1\n", "scrape.interval_s: -1 is out of range: must be > 0"),
        ("scrape:\n  interval_s: fast\n", "scrape.interval_s: 'fast' is not a number"),
        ("scrape:\n  intreval_s: 5\n", "scrape.intreval_s: unknown key; known keys in 'scrape'"),
        ("server:\n  grpc_port: 70000\n", "server.grpc_port: 70000 is out of range"),
        ("server:\n  grpc_port: 9090.5\n", "server.grpc_port: 9090.5 is not an integer"),
        ("server:\n  grpc_port: true\n", "server.grpc_port: True is not an integer"),
        ("server: 5\n", "server: must be a mapping of keys, not int"),
        ("- a\n- b\n", "the top level must be a mapping, not list"),
        ("scrape: [\n", "not valid YAML"),
        ("nodes: {}\n", "nodes: unknown key; known keys in the top level"),
    ],
)
def test_each_bad_key_is_named(text, problem):
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_all_problems_reported_together():
    with pytest.raises(ConfigError) as info:
        parse_config("scrape:\n  interval_s: 0\n  timeout_s: x\nworkloads:\n  idle: 1\n")
    assert len(info.value.problems) == 3


def test_every_setting_is_documented():
    for key, _default, doc in describe():
        assert doc, key


def test_validate_config_command(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("scrape:\n  interval_s: 10\n")
    assert main(["validate-config", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("scrape:\n  interval_s: 0\n  timeout: 1\n")
    assert main(["validate-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "scrape.interval_s" in err
    assert "scrape.timeout: unknown key" in err
    assert main(["validate-config", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read the file" in capsys.readouterr().err
