"""PromQL label matchers from a caller: read as matchers, written back escaped, or refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.formats.promql import Matcher, escape, parse_matchers, render


def test_matchers_are_read_and_written_back_escaped():
    matchers = parse_matchers(' job = "vllm" , model_name=~\'llama.*\',pod!~`a\\b`, x!="q\\"\\n" ,')
    assert matchers == (Matcher("job", "=", "vllm"), Matcher("model_name", "=~", "llama.*"),
                        Matcher("pod", "!~", "a\\b"), Matcher("x", "!=", 'q"\n'))
    assert render(matchers) == 'job="vllm",model_name=~"llama.*",pod!~"a\\\\b",x!="q\\"\\n"'
    assert parse_matchers(render(matchers)) == matchers
    assert parse_matchers("") == ()


@pytest.mark.parametrize("text", [
    'job="x"} or {namespace="b"', 'job="x"} or vector(1)', 'job=x', '"job"="x"', 'job=="x"',
    'job="x" job="y"', 'job="unterminated', 'job="\\q"', 'job="\\xZZ"', "job='\\U00110000'",
    '{job="x"}', 'job="a\nb"'])
def test_anything_but_matchers_is_refused(text):
    with pytest.raises(ValueError):
        parse_matchers(text)


@given(st.text())
def test_an_escaped_value_reads_back_as_itself_and_closes_nothing(value):
    (matcher,) = parse_matchers(f'label="{escape(value)}"')
    assert matcher.value == value


@given(st.text(alphabet=st.sampled_from(list('ab_=!~"\'`\\,{} \nxuU0789')), max_size=40))
def test_any_text_is_matchers_that_render_back_or_a_value_error(text):
    try:
        matchers = parse_matchers(text)
    except ValueError:
        return
    assert parse_matchers(render(matchers)) == matchers
