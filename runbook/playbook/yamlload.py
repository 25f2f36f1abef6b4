"""Safe YAML loading that remembers where every value came from.

Playbooks are small, hand-written files, so the loader is strict: no anchors or aliases (which is
also how YAML bombs are built), no custom tags, a size limit, and every mapping remembers the line
of each key so validation can say ``file:line: message``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20  # 1 MiB: a playbook is a page of YAML, not a data file


class YamlError(Exception):
    """A YAML file could not be read; ``line`` is 1-based or 0 when unknown."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


class LineDict(dict[Any, Any]):
    """A dict that knows the line of itself (``line``) and of each key (``key_lines``)."""

    __slots__ = ("line", "key_lines", "value_lines")

    def __init__(self) -> None:
        super().__init__()
        self.line = 0
        self.key_lines: dict[Any, int] = {}
        self.value_lines: dict[Any, int] = {}


class LineList(list[Any]):
    """A list that knows its own line and the line of each item."""

    __slots__ = ("line", "item_lines")

    def __init__(self) -> None:
        super().__init__()
        self.line = 0
        self.item_lines: list[int] = []


_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc, valid-type]
    pass


def _construct_mapping(loader: Any, node: yaml.MappingNode) -> LineDict:
    out = LineDict()
    out.line = node.start_mark.line + 1
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise YamlError("mapping keys must be plain scalars", key_node.start_mark.line + 1)
        if key in out:
            raise YamlError(f"duplicate key {key!r}", key_node.start_mark.line + 1)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
        out.value_lines[key] = value_node.start_mark.line + 1
    return out


def _construct_sequence(loader: Any, node: yaml.SequenceNode) -> LineList:
    out = LineList()
    out.line = node.start_mark.line + 1
    for item in node.value:
        out.append(loader.construct_object(item, deep=True))
        out.item_lines.append(item.start_mark.line + 1)
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _check_node(node: yaml.Node, seen: set[int], depth: int = 0) -> None:
    """Reject aliases, custom tags and absurd nesting before anything is constructed.

    An alias is the same node object reached twice, so it is found by identity; the walk stops at
    the first one, before a YAML bomb could expand.
    """
    line = node.start_mark.line + 1
    if depth > 64:
        raise YamlError("the document is nested too deeply", line)
    if id(node) in seen:
        raise YamlError("anchors and aliases are not allowed in playbooks", line)
    seen.add(id(node))
    tag = node.tag or ""
    if tag.startswith("!") and not tag.startswith("tag:yaml.org,2002:"):
        raise YamlError(f"custom YAML tag {tag!r} is not allowed", line)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            _check_node(k, seen, depth + 1)
            _check_node(v, seen, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_node(item, seen, depth + 1)


def loads(text: str, *, name: str = "<string>") -> Any:
    """Parse one YAML document into LineDict/LineList/scalars.

    Raises:
        YamlError: Malformed YAML, aliases, custom tags, more than one document, too large.
    """
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise YamlError(f"the file is larger than {MAX_BYTES // 1024} KiB")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_node(node, set())
        return loader.construct_document(node)
    except YamlError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = exc.problem or exc.context or "malformed YAML"
        if "expected a single document" in str(exc.context or ""):
            problem = "only one YAML document is allowed per file"
        raise YamlError(f"malformed YAML: {problem}", line) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"malformed YAML: {exc}") from None
    except RecursionError:
        raise YamlError("the document is nested too deeply") from None
    finally:
        loader.dispose()


def load_file(path: Path) -> Any:
    """Read and parse ``path``; errors carry the line when known."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise YamlError("file not found") from None
    except OSError as exc:
        raise YamlError(f"cannot read the file: {exc.strerror}") from None
    if size > MAX_BYTES:
        raise YamlError(f"the file is larger than {MAX_BYTES // 1024} KiB")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise YamlError("the file is not valid UTF-8") from None
    except OSError as exc:
        raise YamlError(f"cannot read the file: {exc.strerror}") from None
    return loads(text, name=str(path))
