"""promtext against prometheus_client on real and rendered pages, and every bad-line reason."""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from adapters.formats.promtext import BadLine, parse
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.exposition import format_value
from scaler.sim.emulation.vllm_metrics import render_page
from scaler.sim.emulation.vllm_versions import VLLM_VERSIONS

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "metrics"
READABLE_BY_PROMETHEUS_CLIENT = (
    "dcgm_exporter_2.x_k8s.txt",
    "vllm_v0_0.6-era_aibrix-docs.txt",
    "vllm_v1_0.7-era_excerpt.txt",
)

Key = tuple[str, tuple[tuple[str, str], ...], object]


def _value_key(value: float) -> object:
    return "NaN" if math.isnan(value) else float(value)


def reference(text: str) -> list[Key]:
    """Samples per prometheus_client, with its counter ``_total`` renaming undone."""
    bare_counters = set(re.findall(r"^# TYPE (\S+) counter$", text, re.MULTILINE))
    bare_counters = {name for name in bare_counters if not name.endswith("_total")}
    out: list[Key] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name
            if family.type == "counter" and family.name in bare_counters:
                name = name.removesuffix("_total")
            out.append((name, tuple(sorted(s.labels.items())), _value_key(s.value)))
    return sorted(out, key=repr)


def ours(text: str, names: set[str] | None = None) -> list[Key]:
    page = parse(text, names)
    out = [(s.name, tuple(sorted(s.labels.items())), _value_key(s.value))
           for samples in page.samples.values() for s in samples]
    return sorted(out, key=repr)


def _busy_engine(idx: int, version: str) -> EngineState:
    engine = EngineState(running=3 + idx, waiting=idx, kv_cache_usage=0.1 * idx,
                         bucket_version=version, preemptions=idx)
    for k in range(5):
        engine.record_step(100 + k, 10 * idx)
        engine.record_request(prompt_tokens=50 * k + 1, generation_tokens=20 + k, queue_s=0.01 * k,
                              ttft_s=0.05 + 0.2 * k, e2e_s=1.0 + k, max_tokens=256)
    return engine


@pytest.mark.parametrize("filename", READABLE_BY_PROMETHEUS_CLIENT)
def test_fixture_pages_match_prometheus_client(filename: str) -> None:
    text = (FIXTURES / filename).read_text()
    assert ours(text) == reference(text)
    assert parse(text).bad_lines == []


def test_dcgm_4x_readme_keeps_samples_around_elision_lines() -> None:
    text = (FIXTURES / "dcgm_exporter_4.x_readme.txt").read_text()
    with pytest.raises(ValueError):
        list(text_string_to_metric_families(text))
    page = parse(text)
    assert page.bad_lines == [
        BadLine(12, "invalid metric name '...'", "..."),
        BadLine(16, "invalid metric name '...'", "..."),
    ]
    without_elisions = "\n".join(line for line in text.splitlines() if line != "...")
    assert ours(text) == reference(without_elisions)
    temp = page.get("DCGM_FI_DEV_MEMORY_TEMP")[0]
    assert temp.labels == {"gpu": "0", "UUID": "GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52"}
    assert temp.value == 9223372036854775794.0


@pytest.mark.parametrize("version", VLLM_VERSIONS)
@pytest.mark.parametrize("n_engines", [1, 3])
def test_rendered_vllm_pages_match_prometheus_client(version: str, n_engines: int) -> None:
    text = render_page([_busy_engine(i, version) for i in range(n_engines)], version=version)
    assert ours(text) == reference(text)


@pytest.mark.parametrize("version", VLLM_VERSIONS)
def test_selective_parse_equals_filtered_full_parse(version: str) -> None:
    text = render_page([_busy_engine(i, version) for i in range(2)], version=version)
    names = {"vllm:num_requests_waiting", "vllm:prompt_tokens_total",
             "vllm:time_to_first_token_seconds_bucket", "vllm:e2e_request_latency_seconds_sum",
             "vllm:not_on_any_page"}
    expected = [key for key in ours(text) if key[0] in names]
    assert ours(text, names) == expected
    assert {key[0] for key in expected} == names - {"vllm:not_on_any_page"}


def test_selective_parse_skips_bad_lines_of_other_families() -> None:
    text = "good 1\n...\nother{a=\"b} 2\ngood{x=\"y\"} 2\ngood_total 3\ngoodx 4\n"
    page = parse(text, ["good"])
    assert page.bad_lines == []
    assert [(s.labels, s.value) for s in page.get("good")] == [({}, 1.0), ({"x": "y"}, 2.0)]
    assert set(page.samples) == {"good"}
    assert parse(text, []).samples == {}


BAD_LINES = [
    ('foo{a="b} 1', "unterminated label value"),
    ('foo{a="b\\"} 1', "unterminated label value"),
    ('foo{a="b"} abc', "value 'abc' is not a number"),
    ("foo 1_000", "value '1_000' is not a number"),
    ('foo{a="b"}', "missing value"),
    ("foo", "missing value"),
    ('foo{a="b" 1', "expected ',' or '}' after the value of label 'a', got '1'"),
    ('foo{a="b",', "unterminated label set (no closing '}')"),
    ('foo{a="1",a="2"} 1', "duplicate label name 'a'"),
    ("foo{a=b} 1", "value of label 'a' is not quoted"),
    ('foo{a "b"} 1', "expected '=' after label name 'a'"),
    ('foo{,a="b"} 1', "empty label term (two commas, or a comma after '{')"),
    ('foo{a="b",,c="d"} 1', "empty label term (two commas, or a comma after '{')"),
    ('foo{__name__="x"} 1', "reserved label name '__name__'"),
    ('foo{1a="b"} 1', "invalid label name at '1a=\"b\"} 1'"),
    ('foo{"a"="b"} 1', "quoted label names are not supported in text format 0.0.4"),
    ("foo 1 2 3", "unexpected text after the timestamp: '3'"),
    ("foo 1 abc", "timestamp 'abc' is not a number"),
    ("foo-bar 1", "invalid character '-' in metric name 'foo-'"),
    ('{__name__="foo"} 1', "missing metric name before '{' (quoted names are not supported)"),
    ("...", "invalid metric name '...'"),
    ("1foo 2", "invalid metric name '1foo'"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES)
def test_bad_line_reason_and_the_rest_of_the_page_kept(line: str, reason: str) -> None:
    page = parse(f"# HELP ok A gauge.\nok 1\n{line}\nok{{x=\"2\"}} 2\n")
    assert page.bad_lines == [BadLine(3, reason, line)]
    assert [s.value for s in page.get("ok")] == [1.0, 2.0]


@pytest.mark.parametrize(("line", "reason"), [(ln, r) for ln, r in BAD_LINES
                                               if ln == "foo" or ln.startswith(("foo{", "foo "))])
def test_bad_line_reason_in_selective_mode(line: str, reason: str) -> None:
    page = parse(f"ok 1\n{line}\n", {"foo", "ok"})
    assert page.bad_lines == [BadLine(2, reason, line)]


def test_bad_line_is_cut_and_line_numbers_count_every_line() -> None:
    long_line = 'foo{a="' + "x" * 500
    text = "\r\n".join(["# c", "", "a 1", long_line, "b 2", "c{", "d 3"]) + "\r\n"
    page = parse(text)
    assert [(b.lineno, b.reason) for b in page.bad_lines] == [
        (4, "unterminated label value"), (6, "unterminated label set (no closing '}')")]
    assert len(page.bad_lines[0].line) <= 203
    assert page.bad_lines[0].line.startswith('foo{a="xxx')
    assert page.bad_lines[1].line == "c{"
    assert sorted(page.samples) == ["a", "b", "d"]


@pytest.mark.parametrize(("line", "labels", "value"), [
    ('m{a="x\\\\y\\"z\\nw"} 1', {"a": 'x\\y"z\nw'}, 1.0),
    ('m{a="\\t"} 1', {"a": "\\t"}, 1.0),
    ('m{a="1,2}{3",b="="} 2', {"a": "1,2}{3", "b": "="}, 2.0),
    ('m{gpu="0", UUID="GPU-1"} 139', {"gpu": "0", "UUID": "GPU-1"}, 139.0),
    ('m{ a = "b" ,\tc="d", } 3', {"a": "b", "c": "d"}, 3.0),
    ('m{a="b",} 4 1700000000000', {"a": "b"}, 4.0),
    ("m{} 5", {}, 5.0),
    ('m{a="b"}6', {"a": "b"}, 6.0),
    ("  m \t 7  ", {}, 7.0),
    ("m 302.206000", {}, 302.206),
    ("m 1.74262400557e+09", {}, 1.74262400557e9),
    ("m +Inf", {}, math.inf),
    ("m -Inf", {}, -math.inf),
    ("m -0.5 -1", {}, -0.5),
    ("m 9223372036854775794", {}, 9223372036854775794.0),
    ("\x0cm 8\x0c", {}, 8.0),
])
def test_accepted_line_forms(line: str, labels: dict[str, str], value: float) -> None:
    page = parse(line + "\r\n")
    assert page.bad_lines == []
    (sample,) = page.get("m")
    assert dict(sample.labels) == labels
    assert sample.value == value
    assert ours(line) == reference(line)


def test_nan_value() -> None:
    (sample,) = parse("vllm:x NaN\n").get("vllm:x")
    assert math.isnan(sample.value)


def test_labels_are_read_only_and_stable_across_parses() -> None:
    text = 'm{a="b"} 1\n'
    first = parse(text).get("m")[0]
    assert isinstance(first.labels, MappingProxyType)
    with pytest.raises(TypeError):
        first.labels["a"] = "changed"  # type: ignore[index]
    assert parse(text).get("m")[0].labels == {"a": "b"}


# --- property test: random pages, both parsers agree -------------------------------------

_names = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,12}", fullmatch=True)
_label_names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,8}", fullmatch=True)
_label_values = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),
        st.sampled_from(['"', "\\", "\n", ",", "{", "}", "=", " "]),
    ),
    max_size=12,
)
_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@st.composite
def _lines(draw: st.DrawFn) -> str:
    name = draw(_names)
    labels = draw(st.dictionaries(_label_names, _label_values, max_size=4))
    sep = draw(st.sampled_from([",", ", "]))
    body = sep.join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    if body and draw(st.booleans()):
        body += ","
    value = draw(_values)
    if isinstance(value, int):
        value_text = str(value)
    else:
        value_text = draw(st.sampled_from([repr(value), format_value(value), f"{value:f}"]))
    line = name + ("{" + body + "}" if labels or draw(st.booleans()) else "") + " " + value_text
    if draw(st.booleans()):
        line += f" {draw(st.integers(min_value=0, max_value=2**41))}"
    return line


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_lines(), st.just("# HELP x some help"), st.just("")), max_size=8),
       st.sampled_from(["\n", "\r\n"]))
def test_random_pages_agree_with_prometheus_client(lines: list[str], newline: str) -> None:
    text = newline.join(lines) + newline
    assert parse(text).bad_lines == []
    assert ours(text) == reference(text)
    names = {line.split("{")[0].split(" ")[0] for line in lines[:2] if line and line[0] != "#"}
    assert ours(text, names) == [key for key in reference(text) if key[0] in names]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from('ab:_{}=",# \t\\1.e+-nNaI\r'), max_size=30),
                max_size=10))
def test_arbitrary_text_never_raises_and_every_line_is_accounted_for(lines: list[str]) -> None:
    text = "\n".join(lines)
    page = parse(text)
    candidates = [ln for ln in text.split("\n") if ln.strip() and not ln.strip().startswith("#")]
    n_samples = sum(len(samples) for samples in page.samples.values())
    assert n_samples + len(page.bad_lines) == len(candidates)
    assert sorted(b.lineno for b in page.bad_lines) == [b.lineno for b in page.bad_lines]
    for bad in page.bad_lines:
        assert text.split("\n")[bad.lineno - 1].strip()[:200] == bad.line[:200]
