#!/usr/bin/python
# Copyright (c) 2026, mojorust.dr maintainers
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""gpg_key: a key present in a GnuPG home, imported from armored text or generated."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpg_key
short_description: Make sure a GnuPG key is in a keyring, by importing it or by generating it
version_added: 0.1.0
author: mojorust.dr maintainers (@mojorust)
description:
  - With I(key), imports an armored public or secret key unless a key with its fingerprint is there already.
  - With I(generate_uid), generates an ed25519 signing key without passphrase (a host's backup signing key)
    unless a key with that user id exists, and returns its fingerprint either way.
  - Creates I(homedir) with mode 0700 if it does not exist.
options:
  homedir:
    description: The GnuPG home.
    type: path
    required: true
  key:
    description: Armored key to import (public, or secret for a recovery keyring).
    type: str
  fingerprint:
    description: Expected primary key fingerprint of I(key); the import fails if the key has another one.
    type: str
  generate_uid:
    description: User id of a signing key to generate when none with this user id exists.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Secret key material passes through stdin only, never argv, and the module's key option is C(no_log).
"""

EXAMPLES = r"""
- name: Operator public key is in the host's backup keyring
  mojorust.dr.gpg_key:
    homedir: /home/tradingbot/.config/mojorust-backup/gnupg
    key: "{{ backup_operator_keys[0].public_key }}"
    fingerprint: "{{ backup_operator_keys[0].fingerprint }}"

- name: Host signing key exists
  mojorust.dr.gpg_key:
    homedir: /home/tradingbot/.config/mojorust-backup/gnupg
    generate_uid: mojorust backup signing key (prod)
  register: signing
"""

RETURN = r"""
fingerprint:
  description: Primary key fingerprint of the imported or generated key.
  returned: success
  type: str
public_key:
  description: The armored public key (for a generated key, so the operator can trust its signatures).
  returned: when generate_uid is used
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule


def parse_colons(text: str) -> list[dict]:
    """Keys in `gpg --with-colons` output: [{'fingerprint', 'uids', 'secret'}]."""
    keys: list[dict] = []
    current = None
    for line in text.splitlines():
        fields = line.split(":")
        if fields[0] in ("pub", "sec"):
            current = {"fingerprint": None, "uids": [], "secret": fields[0] == "sec"}
            keys.append(current)
        elif fields[0] == "fpr" and current is not None and current["fingerprint"] is None:
            current["fingerprint"] = fields[9].upper()
        elif fields[0] == "uid" and current is not None:
            current["uids"].append(fields[9])
    return keys


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "homedir": {"type": "path", "required": True},
            "key": {"type": "str", "no_log": True},
            "fingerprint": {"type": "str"},
            "generate_uid": {"type": "str"},
        },
        required_one_of=[("key", "generate_uid")],
        mutually_exclusive=[("key", "generate_uid")],
        supports_check_mode=True,
    )
    home = module.params["homedir"]
    gpg = [module.get_bin_path("gpg", required=True), "--homedir", home, "--batch", "--no-tty"]
    changed = False
    if not os.path.isdir(home):
        changed = True
        if module.check_mode:
            module.exit_json(changed=True, fingerprint=module.params["fingerprint"])
        os.makedirs(home, mode=0o700)
    os.chmod(home, 0o700)

    def listed(secret: bool) -> list[dict]:
        rc, out, err = module.run_command([*gpg, "--with-colons", "--list-secret-keys" if secret else "--list-keys"])
        if rc not in (0, 2):
            module.fail_json(msg=f"gpg could not list keys in {home}: {err.strip()}")
        return parse_colons(out)

    if module.params["generate_uid"]:
        uid = module.params["generate_uid"]
        found = [k for k in listed(secret=True) if uid in k["uids"]]
        if not found:
            changed = True
            if module.check_mode:
                module.exit_json(changed=True)
            rc, _out, err = module.run_command(
                [*gpg, "--passphrase", "", "--quick-generate-key", uid, "ed25519", "sign", "never"]
            )
            if rc != 0:
                module.fail_json(msg=f"gpg could not generate the signing key: {err.strip()}")
            found = [k for k in listed(secret=True) if uid in k["uids"]]
        fpr = found[0]["fingerprint"]
        _rc, public, _err = module.run_command([*gpg, "--armor", "--export", fpr])
        module.exit_json(changed=changed, fingerprint=fpr, public_key=public)

    key = module.params["key"]
    rc, out, err = module.run_command([*gpg, "--with-colons", "--import-options", "show-only", "--import"], data=key)
    shown = parse_colons(out)
    if rc != 0 or not shown:
        module.fail_json(msg=f"the key given is not an armored OpenPGP key: {err.strip()[:200]}")
    fpr = shown[0]["fingerprint"]
    expected = (module.params["fingerprint"] or "").replace(" ", "").upper()
    if expected and expected != fpr:
        module.fail_json(msg=f"the key given has fingerprint {fpr}, not the expected {expected}: check the variable")
    secret = shown[0]["secret"]
    if not any(k["fingerprint"] == fpr for k in listed(secret=secret)):
        changed = True
        if not module.check_mode:
            rc, _out, err = module.run_command([*gpg, "--import"], data=key)
            if rc != 0:
                module.fail_json(msg=f"gpg could not import key {fpr}: {err.strip()}")
    module.exit_json(changed=changed, fingerprint=fpr)


if __name__ == "__main__":
    main()
