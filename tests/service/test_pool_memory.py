"""The node pools' memory in the Lease's annotation: written compact, read back suspiciously."""

from __future__ import annotations

import json

import pytest

from scaler.service.pool_memory import UNKNOWN, PoolRecord, decode, encode

WALL = 1_764_000_000.0  # 2025-11-24T16:00:00Z


def test_a_record_reads_back_as_written() -> None:
    records = {"h100": PoolRecord(WALL + 0.25, frozenset({"llm/b/m", "llm/a/m"})),
               "l40s": PoolRecord()}
    text = encode(records)
    assert json.loads(text) == {
        "h100": {"lastChange": "2025-11-24T16:00:01Z", "workloads": ["llm/a/m", "llm/b/m"]},
        "l40s": {"workloads": []}}
    back, problem = decode(text)
    assert problem is None
    # Whole seconds, rounded up: a cooldown read back is never shorter.
    assert back == {"h100": PoolRecord(WALL + 1, frozenset({"llm/a/m", "llm/b/m"})),
                    "l40s": PoolRecord()}


def test_names_beyond_the_budget_are_counted_not_listed() -> None:
    many = frozenset(f"llm/model-{i:04d}/desired-replicas" for i in range(1000))
    text = encode({"h100": PoolRecord(WALL, many, left_off=2)}, budget=4096)
    assert len(text) <= 4096
    entry = json.loads(text)["h100"]
    assert len(entry["workloads"]) + entry["leftOff"] == 1000 + 2
    back, _ = decode(text)
    assert back["h100"].left_off == entry["leftOff"]


def test_absent_is_no_record_at_all() -> None:
    assert decode(None) == ({}, None)


@pytest.mark.parametrize(("text", "problem"), [
    ("{", "is not JSON"),
    ("[]", "is not a JSON object"),
])
def test_an_unreadable_annotation_says_so(text: str, problem: str) -> None:
    records, found = decode(text)
    assert records == {} and found is not None and problem in found


@pytest.mark.parametrize(("entry", "problem"), [
    ("nope", "not a JSON object"),
    ({"workloads": "llm/a/m"}, "workloads is not a list of names"),
    ({"workloads": [], "leftOff": -1}, "leftOff -1 is not a whole number >= 0"),
    ({"workloads": [], "lastChange": 5}, "lastChange is not a timestamp"),
    ({"workloads": [], "lastChange": "2025-11-24T16:00:00"}, "has no time zone"),
    ({"workloads": [], "lastChange": "yesterday"}, "Invalid isoformat string"),
])
def test_an_unreadable_pool_is_unknown_never_empty(entry: object, problem: str) -> None:
    records, found = decode(json.dumps({"h100": entry, "l40s": {"workloads": ["llm/a/m"]}}))
    assert records["h100"] == UNKNOWN and records["h100"].left_off == 1
    assert records["l40s"] == PoolRecord(None, frozenset({"llm/a/m"}))
    assert found is not None and found.startswith("pool h100: ") and problem in found
