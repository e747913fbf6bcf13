"""YAML as tunesmith reads it: UTF-8 text (a BOM allowed), safe_load, and a key repeated in one mapping is an
error naming the key and both lines (PyYAML would silently keep the last one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tunesmith.errors import TunesmithError


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that records a key repeated in one mapping (PyYAML keeps the last one without a word)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[str, int, int]] = []  # (key, line of the repeat, line of the first)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may repeat by design
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                self.duplicates.append((str(key), line, seen[key]))
            elif isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def yaml_load(text: str, *, where: str) -> Any:
    """`yaml.safe_load`, except that a key repeated in one mapping is an error naming the key and its lines."""
    loader = _UniqueKeyLoader(text)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    if loader.duplicates:
        raise TunesmithError(
            "a key appears twice in the same section (YAML would silently keep the last one)", where=where,
            problems=[f'"{key}" on line {line} (first on line {first})' for key, line, first in loader.duplicates],
            fix="keep one of each; delete or merge the repeated lines")
    return data


def read_text(path: Path) -> str:
    """A config file's text; it must be UTF-8 (a BOM is allowed), as YAML 1.1 and every editor default expect."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise TunesmithError(f"not UTF-8 text: byte 0x{raw[err.start]:02x} on line {line} cannot be decoded",
                             where=f"{path}:{line}",
                             fix="save the config as UTF-8 (e.g. `iconv -f cp949 -t utf-8 OLD > NEW`, "
                                 "or your editor's 'save with encoding')") from None
