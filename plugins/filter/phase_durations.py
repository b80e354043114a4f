"""phase_durations: seconds per phase from a list of time marks."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: phase_durations
author: mojorust.dr maintainers
version_added: 0.1.0
short_description: Seconds spent in each phase, from the marks a recovery records
description:
  - Takes marks C([{phase, at}]) in the order they were recorded (C(at) in seconds, for example
    C(now().timestamp())); the first mark starts the clock. Returns a mapping phase to seconds (rounded to
    0.01), in order, the time of each phase being from the mark before it to its own.
options:
  _input:
    description: The marks.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Report phases
  ansible.builtin.debug:
    msg: "{{ [{'phase': 'start', 'at': 0}, {'phase': 'verify', 'at': 1.5}] | mojorust.dr.phase_durations }}"
    # {"verify": 1.5}
"""

RETURN = r"""
_value:
  description: Phase name to seconds.
  type: dict
"""


def phase_durations(marks: list) -> dict:
    try:
        times = [(str(m["phase"]), float(m["at"])) for m in marks]
    except (KeyError, TypeError, ValueError) as error:
        raise AnsibleFilterError(f"phase_durations: each mark needs 'phase' and a numeric 'at' ({error})") from None
    return {phase: round(at - times[i][1], 2) for i, (phase, at) in enumerate(times[1:])}


class FilterModule:
    def filters(self):
        return {"phase_durations": phase_durations}
