"""`scaler validate-config` on what users hand it: ConfigMap manifests, broken YAML, repeated
keys and settings that contradict each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaler.commands.cli import main
from scaler.config.load import ConfigError, parse_config, read_config

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG_MAP = REPO / "deploy/base/configmap.yaml"


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="c.yaml")
    return info.value.problems


def test_the_shipped_config_map_manifest_passes(capsys):
    assert main(["validate-config", str(SHIPPED_CONFIG_MAP)]) == 0
    assert capsys.readouterr().out == f"{SHIPPED_CONFIG_MAP}: OK\n"


def test_a_config_map_is_checked_by_its_config_yaml():
    manifest = SHIPPED_CONFIG_MAP.read_text()
    config, _ = read_config(SHIPPED_CONFIG_MAP)
    assert config.node_pools.lease_namespace == "llm-scaler"
    bad = manifest.replace("interval_s: 5.0", "interval_s: -5.0")
    assert any(p.startswith("scrape.interval_s: -5.0 is out of range") for p in problems_of(bad))


def test_a_yaml_error_inside_the_config_map_block_is_placed_in_the_manifest():
    lines = SHIPPED_CONFIG_MAP.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if "interval_s: 5.0" in line)
    lines[row] = lines[row].replace("interval_s: 5.0", "interval_s: [5.0")
    (problem,) = problems_of("\n".join(lines) + "\n")
    assert problem.startswith(f"not valid YAML at line {row + 2}, column 7: expected ',' or ']'")
    assert f"line {row + 1}, column 19" in problem  # the '[' it is about


def test_a_config_map_without_config_yaml_says_which_key_it_needs():
    (problem,) = problems_of("apiVersion: v1\nkind: ConfigMap\ndata:\n  other.yaml: x\n")
    assert "ConfigMap without data['config.yaml']" in problem


def test_a_yaml_error_names_the_file_line_and_column(tmp_path, capsys):
    path = tmp_path / "scaler.yaml"
    path.write_text("scrape:\n  interval_s: 3\n timeout_s: [\n")
    assert main(["validate-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: 1 problem(s):\n  not valid YAML at line 3, column 2: " in err
    assert "<unicode string>" not in err


def test_a_repeated_key_is_refused_where_it_repeats():
    (problem,) = problems_of("scrape:\n  interval_s: 3\n  timeout_s: 1\n  interval_s: 4\n")
    assert problem == ("not valid YAML at line 4, column 3: duplicate key 'interval_s' (first "
                       "at line 2, column 3); a repeated key would silently win")


@pytest.mark.parametrize(("text", "rule"), [
    ("scrape:\n  interval_s: 30\n  stale_after_s: 10\n",
     "scrape.stale_after_s: 10 must be greater than scrape.interval_s + scrape.timeout_s "
     "(30 + 2)"),
    ("workloads:\n  idle_timeout_s: 5\n",
     "workloads.idle_timeout_s: 5 must be greater than scrape.interval_s (5) and KEDA's "
     "pollingInterval (default 30 s)"),
    ("scrape:\n  interval_s: 40\n  stale_after_s: 100\nworkloads:\n  idle_timeout_s: 35\n",
     "workloads.idle_timeout_s: 35 must be greater than scrape.interval_s (40)"),
    ("prometheus:\n  url: not a url\n",
     "prometheus.url: 'not a url' is not an http(s) URL such as"),
    ("prometheus:\n  url: ftp://prometheus:9090\n", "prometheus.url: 'ftp://prometheus:9090'"),
    ("gpu:\n  path: metrics\n", "gpu.path: 'metrics' is not a URL path starting with '/'"),
])
def test_contradictions_are_refused_with_the_rule_they_break(text, rule):
    assert any(p.startswith(rule) for p in problems_of(text)), problems_of(text)


def test_settings_that_agree_pass():
    config = parse_config("scrape:\n  interval_s: 10\n  stale_after_s: 30\nworkloads:\n"
                          "  idle_timeout_s: 60\nprometheus:\n  url: https://prom:9090\n"
                          "gpu:\n  path: /dcgm/metrics\n")
    assert config.prometheus.url == "https://prom:9090" and config.gpu.path == "/dcgm/metrics"
