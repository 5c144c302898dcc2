"""Reading replica profiles from YAML: every bad, missing or unknown key named with the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaler.config.profiles import load_profile, profile_names
from scaler.model.profile import ReplicaProfile
from tests.model.test_profile import GOOD


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_profiles_are_listed_by_name() -> None:
    assert {"llama-8b-h100", "llama-70b-tp4-h100"} <= profile_names()


def test_good_file_round_trips(tmp_path: Path) -> None:
    prof = load_profile(write(tmp_path, GOOD))
    assert prof == ReplicaProfile("test", 1, 28000.0, 0.0065, 1.5e-5, 4.5e-8, 440000, 1024, 8192)
    text = GOOD + "decode_step_cpu_per_seq_s: 7.5e-05\nmax_requests_per_s: 150\n"
    assert load_profile(write(tmp_path, text)) == ReplicaProfile(
        "test", 1, 28000.0, 0.0065, 1.5e-5, 4.5e-8, 440000, 1024, 8192, 7.5e-5, 150.0)


def test_missing_key_names_file_and_key(tmp_path: Path) -> None:
    text = GOOD.replace("kv_cache_tokens: 440000\n", "")
    path = write(tmp_path, text, "short.yaml")
    with pytest.raises(ValueError, match=r"short\.yaml: missing key 'kv_cache_tokens'"):
        load_profile(path)


def test_each_bad_key_is_listed(tmp_path: Path) -> None:
    text = (GOOD.replace("gpus: 1", "gpus: two")
            .replace("max_num_seqs: 1024", "max_num_seqs: 10.5")
            .replace("decode_step_base_s: 0.0065", "decode_step_base_s: -1")
            + "max_requests_per_s: 0\ndecode_step_cpu_per_seq_s: -1e-6\ncolour: blue\n")
    with pytest.raises(ValueError) as info:
        load_profile(write(tmp_path, text, "bad.yaml"))
    message = str(info.value)
    assert message.startswith(str(tmp_path / "bad.yaml"))
    for part in ("key 'gpus': expected a positive integer, got 'two'",
                 "key 'max_num_seqs': expected a positive integer, got 10.5",
                 "key 'decode_step_base_s': expected a finite number > 0, got -1",
                 "key 'max_requests_per_s': expected a finite number > 0, got 0",
                 "key 'decode_step_cpu_per_seq_s': expected a finite number >= 0, got '-1e-6'",
                 "unknown key 'colour'"):
        assert part in message


def test_not_yaml_or_not_mapping(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"x\.yaml: not valid YAML"):
        load_profile(write(tmp_path, "name: [unclosed\n", "x.yaml"))
    with pytest.raises(ValueError, match=r"y\.yaml: expected a mapping"):
        load_profile(write(tmp_path, "- 1\n- 2\n", "y.yaml"))


def test_numeric_strings_are_accepted(tmp_path: Path) -> None:
    # PyYAML reads 1e-8 (no dot) as a string; it is still a number.
    prof = load_profile(write(tmp_path, GOOD.replace("4.5e-08", "1e-8")))
    assert prof.decode_step_per_cached_token_s == pytest.approx(1e-8)
