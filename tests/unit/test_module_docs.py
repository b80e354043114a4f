"""Every module's DOCUMENTATION, EXAMPLES and RETURN is valid YAML that ansible-doc can render: a stray
'word: text' in a description turns it into a mapping, which ansible-doc refuses."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

MODULES = sorted((Path(__file__).resolve().parents[2] / "plugins" / "modules").glob("*.py"))


def _blocks(path: Path) -> dict[str, str]:
    tree = ast.parse(path.read_text())
    return {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN")
    }


def _bad_descriptions(value, where=""):
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "description":
                items = item if isinstance(item, list) else [item]
                yield from (f"{where}: {i!r}" for i in items if not isinstance(i, str))
            yield from _bad_descriptions(item, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            yield from _bad_descriptions(item, where)


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_module_documentation_renders(path):
    blocks = _blocks(path)
    assert set(blocks) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}, f"{path.name} lacks a doc block"
    docs = {name: yaml.safe_load(text) for name, text in blocks.items()}
    assert docs["DOCUMENTATION"]["module"] == path.stem
    bad = list(_bad_descriptions(docs["DOCUMENTATION"])) + list(_bad_descriptions(docs["RETURN"]))
    assert not bad, f"{path.name}: descriptions that are not text (a stray ': ' in them?): {bad}"
