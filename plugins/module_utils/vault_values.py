"""Setting dotted keys in a mapping of variables (the content of a vault file), with the previous values kept."""

from __future__ import annotations


class VaultError(Exception):
    """A key path that is not in the file (and may not be created)."""


def set_path(data: dict, dotted: str, value, create: bool):
    """Set data[a][b][c] for 'a.b.c'; return the previous value (None when it did not exist)."""
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        if not isinstance(node.get(part), dict):
            if not create:
                raise VaultError(f"{dotted}: {part} is not in the vault file (create: true adds it)")
            node[part] = {}
        node = node[part]
    if last not in node and not create:
        raise VaultError(f"{dotted}: {last} is not in the vault file (create: true adds it)")
    previous = node.get(last)
    node[last] = value
    return previous


def update(data: dict, values: dict, create: bool) -> tuple[list[str], dict]:
    """Every dotted key set; the keys whose value changed, and their previous values."""
    changed, previous = [], {}
    for dotted, value in sorted(values.items()):
        old = set_path(data, dotted, value, create)
        if old != value:
            changed.append(dotted)
            previous[dotted] = old
    return changed, previous
