"""YAML as users hand it over: a config document, or the ConfigMap manifest holding one.

PyYAML names a string it parsed ``<unicode string>`` and lets a repeated key silently win;
here every syntax error and every duplicate key is one line with the line and column in the
file the user has (inside a ConfigMap's ``config.yaml: |`` block, counted in the manifest),
and a ConfigMap manifest is read for its ``data["config.yaml"]``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import yaml

CONFIG_KEY = "config.yaml"


class YamlProblem(ValueError):
    """One line naming where the YAML is wrong (line and column, 1-based) and why."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader refusing a key given twice in one mapping (PyYAML keeps the last)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> Any:
    seen: dict[Hashable, yaml.Mark] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, Hashable) and key in seen:
            first = seen[key]
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {first.line + 1}, column "
                            f"{first.column + 1}); a repeated key would silently win",
                key_node.start_mark)
        if isinstance(key, Hashable):
            seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                              _mapping_without_duplicates)


def load_yaml(text: str, *, line_offset: int = 0, column_offset: int = 0) -> Any:
    """The document in ``text``; YamlProblem with the line and column (shifted by the
    offsets: where ``text`` starts in the file) of the first error or duplicate key."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        raise YamlProblem(_where(exc, line_offset, column_offset)) from exc
    except yaml.YAMLError as exc:
        raise YamlProblem(f"not valid YAML: {exc}") from exc


def _where(exc: yaml.MarkedYAMLError, line_offset: int, column_offset: int) -> str:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "not valid YAML"
    if mark is None:
        return problem
    context = ""
    if exc.context and exc.context_mark is not None and exc.problem:
        context = (f" ({exc.context} at line {exc.context_mark.line + 1 + line_offset}, column "
                   f"{exc.context_mark.column + 1 + column_offset})")
    return (f"not valid YAML at line {mark.line + 1 + line_offset}, column "
            f"{mark.column + 1 + column_offset}: {problem}{context}")


def is_config_map(document: Any) -> bool:
    return isinstance(document, Mapping) and document.get("kind") == "ConfigMap" \
        and "apiVersion" in document


def config_map_data(text: str, document: Mapping[str, Any]) -> Any:
    """The config document inside a ConfigMap manifest's ``data["config.yaml"]``."""
    data = document.get("data")
    if not isinstance(data, Mapping) or CONFIG_KEY not in data:
        raise YamlProblem(f"a ConfigMap without data[{CONFIG_KEY!r}]: the scaler reads its "
                          f"settings from that key (see deploy/base/configmap.yaml)")
    inner = data[CONFIG_KEY]
    if not isinstance(inner, str):
        raise YamlProblem(f"data[{CONFIG_KEY!r}] must be a string (a YAML block: "
                          f"'{CONFIG_KEY}: |'), not {type(inner).__name__}")
    return load_yaml(inner, **_block_offsets(text))


def _block_offsets(text: str) -> dict[str, int]:
    """Where the ``config.yaml: |`` block's text starts in the manifest (0 when it is written
    in another style, whose lines do not map one to one)."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    for key, value in _pairs(node, "data"):
        if key == CONFIG_KEY and isinstance(value, yaml.ScalarNode) and value.style == "|":
            first = value.start_mark.line + 1  # the block starts on the line after '|'
            lines = text.splitlines()[first:]
            body = next((line for line in lines if line.strip()), "")
            return {"line_offset": first, "column_offset": len(body) - len(body.lstrip(" "))}
    return {}


def _pairs(node: yaml.Node | None, key: str) -> list[tuple[Any, yaml.Node]]:
    """The (key, value node) pairs of the mapping under ``key`` in a top-level mapping."""
    if not isinstance(node, yaml.MappingNode):
        return []
    for key_node, value in node.value:
        if key_node.value == key and isinstance(value, yaml.MappingNode):
            return [(k.value, v) for k, v in value.value]
    return []
