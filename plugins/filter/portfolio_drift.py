"""portfolio_drift: which portfolio values differ from a reference by more than a tolerance."""

from __future__ import annotations

DOCUMENTATION = r"""
name: portfolio_drift
author: mojorust.dr maintainers
version_added: 0.1.0
short_description: Sentences naming the portfolio values that drift from a reference
description:
  - For each named value (skipping missing ones), the relative difference from I(reference); values further
    than I(tolerance) away are reported as sentences. An empty list means everything agrees.
options:
  _input:
    description: Name to value (numbers or numeric strings; None or empty is skipped).
    type: dict
    required: true
  reference:
    description: The value the others are compared with (the backup set's portfolio value).
    type: float
    required: true
  tolerance:
    description: Largest relative difference not reported (0.01 is one percent).
    type: float
    default: 0.01
"""

EXAMPLES = r"""
- name: Drift between the bot and the set
  ansible.builtin.debug:
    msg: "{{ {'bot': 10100, 'state file': 10000} | mojorust.dr.portfolio_drift(10000, 0.005) }}"
    # ["bot differs from the reference by 1.00% (10100.0 vs 10000.0)"]
"""

RETURN = r"""
_value:
  description: One sentence per drifting value.
  type: list
  elements: str
"""


def portfolio_drift(values: dict, reference, tolerance=0.01) -> list[str]:
    reference = float(reference)
    out = []
    for name, value in values.items():
        if value is None or value == "":
            continue
        value = float(value)
        if reference == 0:
            differs = value != 0
            relative = float("inf") if differs else 0.0
        else:
            relative = abs(value - reference) / abs(reference)
            differs = relative > float(tolerance)
        if differs:
            out.append(f"{name} differs from the reference by {relative:.2%} ({value} vs {reference})")
    return out


class FilterModule:
    def filters(self):
        return {"portfolio_drift": portfolio_drift}
