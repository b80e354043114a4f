"""inventory_home: the directory an inventory lives in, where files kept beside it go (backup-signing-keys/)."""

from __future__ import annotations

import os

DOCUMENTATION = r"""
name: inventory_home
author: mojorust.dr maintainers
version_added: 0.1.0
short_description: The directory of the inventory, for files kept beside it
description:
  - Returns I(_input) (a host's C(inventory_dir)) when it is set. A host added at run time (C(add_host)) or the
    implicit localhost has none; then the first inventory source is taken, or the directory holding it when it is
    a file (C(-i inventory/hosts.yml), as Molecule passes it).
options:
  _input:
    description: The host's C(inventory_dir); may be empty or undefined-as-none.
    type: str
    required: true
  sources:
    description: C(ansible_inventory_sources).
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: The signing keys beside the inventory
  ansible.builtin.set_fact:
    keys_dir: "{{ inventory_dir | mojorust.dr.inventory_home(ansible_inventory_sources) }}/backup-signing-keys"
"""

RETURN = r"""
_value:
  description: An absolute directory.
  type: str
"""


def inventory_home(inventory_dir, sources) -> str:
    if inventory_dir:
        return str(inventory_dir)
    first = str((sources or [os.getcwd()])[0])
    return os.path.dirname(first) if os.path.isfile(first) else first


class FilterModule:
    def filters(self) -> dict:
        return {"inventory_home": inventory_home}
