"""``scaler settings``: generated from the declarations, and the README shows the current one."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaler.commands import cli
from scaler.commands.settings import reference, with_reference
from scaler.config.load import describe
from scaler.keda.metadata import metadata_keys

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_reference_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert with_reference(text) == text, (
        "README.md's reference tables are stale: run `scaler settings --write-readme README.md`")


def test_reference_names_every_key_with_its_default_and_doc() -> None:
    block = reference()
    for key in metadata_keys():
        assert f"| `{key.key}` |" in block, key.key
        assert key.setting.doc in block, key.key
    for key, default, doc in describe():
        assert f"| `{key}` | {f'`{default}`' if default else ''} | {doc} |" in block, key


def test_a_changed_declaration_makes_the_readme_stale() -> None:
    text = README.read_text(encoding="utf-8")
    edited = text.replace("| `minReplicas` | `0` |", "| `minReplicas` | `1` |")
    assert edited != text
    assert with_reference(edited) == text


def test_settings_command_lists_config_and_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "scrape.interval_s = 5" in out
    assert "| `targetQueuePerReplica` | `5` |" in out


def test_write_readme_replaces_only_the_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("intro\n" + reference().replace("`5`", "`6`") + "\noutro\n")
    assert cli.main(["settings", "--write-readme", str(readme)]) == 0
    assert readme.read_text() == "intro\n" + reference() + "\noutro\n"
