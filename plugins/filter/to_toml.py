"""to_toml: render a mapping as TOML (the subset configuration files use)."""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: to_toml
author: mojorust.dr maintainers
version_added: 0.1.0
short_description: Render a mapping as a TOML document
description:
  - Renders nested mappings as TOML tables and scalars, lists and lists of mappings as values, in the order
    given, so that a configuration file can be kept as Ansible variables and checked with C(tomllib).
  - Supports strings, booleans, integers, finite floats, dates, lists and nested mappings. Anything else
    (C(None), NaN, objects) is an error naming the key, because TOML has no way to write it.
options:
  _input:
    description: The mapping to render.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Write the bot configuration
  ansible.builtin.copy:
    content: "{{ {'bot': {'name': 'mojorust', 'mode': 'paper'}} | mojorust.dr.to_toml }}"
    dest: /home/tradingbot/mojo-trading-bot/config/trading.toml
"""

RETURN = r"""
_value:
  description: The TOML document, ending with a newline.
  type: string
"""

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _string(text: str) -> str:
    # A TOML basic string: JSON's escapes are TOML's, except that TOML also forbids a raw DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(name: object, path: str) -> str:
    if not isinstance(name, str):
        raise AnsibleFilterError(f"to_toml: key {name!r} at {path or 'top level'} is not a string")
    return name if _BARE_KEY.fullmatch(name) else _string(name)


def _value(value: object, path: str) -> str:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AnsibleFilterError(f"to_toml: {path} is {value}, which a configuration cannot hold")
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        items = ", ".join(f"{_key(k, path)} = {_value(v, f'{path}.{k}')}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_value(v, f"{path}[{i}]") for i, v in enumerate(value)) + "]"
    raise AnsibleFilterError(f"to_toml: {path} has type {type(value).__name__}, which TOML cannot write")


def _table(data: Mapping, path: str, lines: list[str]) -> None:
    scalars = [(k, v) for k, v in data.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in data.items() if isinstance(v, Mapping)]
    for k, v in scalars:
        lines.append(f"{_key(k, path)} = {_value(v, f'{path}.{k}' if path else str(k))}")
    for k, v in tables:
        sub = f"{path}.{_key(k, path)}" if path else _key(k, path)
        if lines:
            lines.append("")
        lines.append(f"[{sub}]")
        _table(v, sub, lines)


def to_toml(data: object) -> str:
    if not isinstance(data, Mapping):
        raise AnsibleFilterError(f"to_toml: expects a mapping, got {type(data).__name__}")
    lines: list[str] = []
    _table(data, "", lines)
    return "\n".join(lines) + "\n"


class FilterModule:
    def filters(self):
        return {"to_toml": to_toml}
