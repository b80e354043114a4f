"""backup_drill_choice: the set a backup drill restores, from a window of ages and a seed (plan section 4)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.mojorust.dr.plugins.module_utils.drill_select import DrillSelectError, choose_set

DOCUMENTATION = r"""
name: backup_drill_choice
author: mojorust.dr maintainers
version_added: 0.1.0
short_description: Choose the backup set a drill restores, seeded, from a window of ages
description:
  - Takes set ids, or paths and keys ending in one (anything else, such as C(.partial-*), is ignored), and returns
    the drill's choice as a record - C(id) (empty when no set is in the window), C(seed), C(now), C(window),
    C(candidates), C(index), C(sets) (each id with its age in days) and C(error) (a message naming the sets there
    are when the window is empty).
  - The candidates are the sets made between I(max_days) and I(min_days) before I(now), oldest first; the chosen
    one is the candidate at the index given by the first 16 hex digits of sha256(I(seed)) modulo their number.
    The same ids, I(now) and I(seed) always give the same set.
options:
  _input:
    description: Set ids, or paths and keys ending in a set id.
    type: list
    elements: str
    required: true
  seed:
    description: Seed of the choice; empty takes the UTC date of I(now) (2026-11-26).
    type: str
    default: ""
  now:
    description: Reference time (ISO 8601, UTC when no zone, or a set id); empty takes the clock.
    type: str
    default: ""
  min_days:
    description: Youngest age of a candidate, in days.
    type: float
    default: 7
  max_days:
    description: Oldest age of a candidate, in days.
    type: float
    default: 14
"""

EXAMPLES = r"""
- name: Choose the set to drill
  ansible.builtin.set_fact:
    drill_choice: "{{ ['20261112T020000Z', '20261118T020000Z'] | mojorust.dr.backup_drill_choice(seed='2026-11') }}"
"""

RETURN = r"""
_value:
  description: The choice (id, seed, now, window, candidates, index, sets, error).
  type: dict
"""


def backup_drill_choice(names, seed="", now="", min_days=7, max_days=14) -> dict:
    try:
        return choose_set(list(names or []), seed=seed, now=now, min_days=min_days, max_days=max_days)
    except DrillSelectError as error:
        raise AnsibleFilterError(f"backup_drill_choice: {error}") from error


class FilterModule:
    def filters(self) -> dict:
        return {"backup_drill_choice": backup_drill_choice}
