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


def test_every_filter_has_its_documentation():
    """ansible-doc -t filter finds a page for each filter the collection registers (issue 16: 7 had none)."""
    import importlib
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    registered = set()
    for path in (root / "plugins" / "filter").glob("*.py"):
        module = importlib.import_module(f"ansible_collections.mojorust.dr.plugins.filter.{path.stem}")
        registered |= set(module.FilterModule().filters())
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(root / "collections"))
    doc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-t", "filter", "--json",
                          *[f"mojorust.dr.{name}" for name in sorted(registered)]],
                         capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert doc.returncode == 0, doc.stderr
    documented = {name.removeprefix("mojorust.dr.") for name, page in json.loads(doc.stdout).items() if page["doc"]}
    assert registered == documented, f"undocumented: {sorted(registered - documented)}"
