"""``server.http_api_token_file``: checked when the config loads, read once at start.

As with the TLS files, a missing Secret fails ``scaler validate-config`` (and a start), naming
the key and the path and never the contents; surrounding whitespace is not part of the token.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest

from scaler.commands.serve import start_app
from scaler.config.load import ConfigError, load_api_token, needs_restart, parse_config
from scaler.config.settings import ServiceConfig

KEY = "server.http_api_token_file"
TOKEN = "tok-4c1d9e0a7b3f5e2d"


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def token_file(tmp_path, text: str):
    path = tmp_path / "token"
    path.write_text(text)
    return path


def test_unset_the_route_is_off():
    assert ServiceConfig().server.http_api_token_file == ""
    assert load_api_token(ServiceConfig().server) is None


@pytest.mark.parametrize("text", [TOKEN, f"{TOKEN}\n", f"  \n{TOKEN} \t\r\n"])
def test_whitespace_around_the_token_is_not_part_of_it(tmp_path, text):
    path = token_file(tmp_path, text)
    config = parse_config(f"server: {{http_api_token_file: {str(path)!r}}}")
    token = load_api_token(config.server)
    assert token is not None
    assert token.matches(f"Bearer {TOKEN}")
    assert not token.matches(f"Bearer {text}x")
    assert TOKEN not in repr(token)


def test_a_missing_file_names_the_key_and_the_path(tmp_path):
    path = tmp_path / "absent"
    [problem] = problems_of(f"server: {{http_api_token_file: {str(path)!r}}}")
    assert problem.startswith(f"{KEY}: cannot read {path}: ")
    assert "mount the Secret" in problem


@pytest.mark.parametrize("text", ["", " \n\t\n"], ids=["empty", "only whitespace"])
def test_an_empty_file_is_refused(tmp_path, text):
    path = token_file(tmp_path, text)
    [problem] = problems_of(f"server: {{http_api_token_file: {str(path)!r}}}")
    assert problem.startswith(f"{KEY}: {path} holds no token")


@pytest.mark.parametrize("text", ["zq7x v9k2", "zq7x\nv9k2", "zq7x\u00e9v9k2"],
                         ids=["space", "line break", "not ascii"])
def test_a_token_no_header_can_carry_is_refused_without_echoing_it(tmp_path, text):
    path = token_file(tmp_path, text)
    [problem] = problems_of(f"server: {{http_api_token_file: {str(path)!r}}}")
    assert problem.startswith(f"{KEY}: {path} ")
    assert "zq7x" not in problem and "v9k2" not in problem


async def test_a_file_gone_by_start_stops_the_start_naming_the_key(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    path = token_file(tmp_path, TOKEN)
    config = parse_config(f"server: {{http_api_token_file: {str(path)!r}, host: 127.0.0.1, "
                          "grpc_port: 0, http_port: 0}")
    path.unlink()  # e.g. the Secret was deleted after the config was validated
    with pytest.raises(ConfigError) as info:
        await start_app(config)
    [problem] = info.value.problems
    assert problem.startswith(f"{KEY}: cannot read {path}")


def test_a_change_needs_a_restart():
    old = ServiceConfig()
    new = dataclasses.replace(old, server=dataclasses.replace(
        old.server, http_api_token_file="/etc/scaler-api-token/token"))
    assert "server" in needs_restart(old, new)
