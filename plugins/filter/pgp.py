"""pgp_keys: the keys `gpg --with-colons --show-keys FILE` lists, with their state (a revoked or expired key signs
nothing that may be trusted)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: pgp_keys
short_description: Keys in C(gpg --with-colons) output, with fingerprint, user ids, revoked and expired
version_added: 0.1.0
author: mojorust.dr maintainers
description:
  - Parses the output of C(gpg --batch --with-colons --show-keys FILE) (or C(--list-keys)) into one entry per
    primary key. A key file that carries its revocation (as the backup role keeps a rotated-out signing key) shows
    as C(revoked).
positional: _input
options:
  _input:
    description: The command's standard output.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Fingerprints of the signing keys that are still good
  ansible.builtin.set_fact:
    signers: "{{ shown.stdout | mojorust.dr.pgp_keys | rejectattr('revoked') | map(attribute='fingerprint') | list }}"
"""

RETURN = r"""
_value:
  description: One entry per key - C(fingerprint), C(uids), C(revoked), C(expired), C(secret).
  type: list
  elements: dict
"""


def pgp_keys(text: str) -> list[dict]:
    keys: list[dict] = []
    current = None
    for line in (text or "").splitlines():
        fields = line.split(":")
        if fields[0] in ("pub", "sec"):
            validity = fields[1] if len(fields) > 1 else ""
            current = {"fingerprint": None, "uids": [], "revoked": validity == "r", "expired": validity == "e",
                       "secret": fields[0] == "sec"}  # fmt: skip
            keys.append(current)
        elif fields[0] == "fpr" and current is not None and current["fingerprint"] is None and len(fields) > 9:
            current["fingerprint"] = fields[9].upper()
        elif fields[0] == "uid" and current is not None and len(fields) > 9:
            current["uids"].append(fields[9])
    return keys


class FilterModule:
    def filters(self) -> dict:
        return {"pgp_keys": pgp_keys}
