#!/usr/bin/python
# Copyright (c) 2026, mojorust.dr maintainers
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""gpg_key_file: armored OpenPGP keys kept in a root-owned file: public keys checked by fingerprint, or a host's
signing key generated, and rotated on request."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpg_key_file
short_description: OpenPGP keys in a root-owned file - public keys checked, or a signing key generated and rotated
version_added: 0.1.0
author: mojorust.dr maintainers (@mojorust)
description:
  - The backup command builds a private keyring from such files for each run, so the keys are plain files with
    an owner and a mode (root's, readable by the backup user's group for a secret key) instead of a GnuPG home that
    belongs to whoever runs gpg.
  - With I(keys), the file holds exactly these armored public keys; each must have its I(fingerprint) (a key
    with another one fails, naming both). Rewritten only when its content differs.
  - With I(generate_uid), the file holds a secret ed25519 signing key without passphrase (a host's backup signing
    key), generated when the file is missing. Its revocation certificate is kept in I(revocation_path).
  - With I(rotate), a new signing key replaces the one in the file; the old one is kept beside it as
    C(<path>.<old fingerprint>.retired) (0600) and returned with its revocation certificate, so it can be revoked
    wherever it was trusted.
options:
  path:
    description: The key file.
    type: path
    required: true
  keys:
    description: Public keys the file holds, in this order.
    type: list
    elements: dict
    suboptions:
      fingerprint: {description: Expected primary key fingerprint., type: str, required: true}
      public_key: {description: The armored public key., type: str, required: true}
      revocation:
        description:
          - The key's revocation certificate; the file then holds the key revoked, so that a keyring built from it
            refuses every signature the key made (a host's signing key after a breach).
        type: str
  generate_uid:
    description: User id of the signing key generated when I(path) does not exist.
    type: str
  revocation_path:
    description: Where the revocation certificate of a generated key is written (0600); required with I(generate_uid).
    type: path
  rotate:
    description: Replace the signing key in I(path) by a new one (with I(generate_uid)).
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.files
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: partial
    details: For I(keys), the fingerprints before and after; never key material.
notes:
  - Secret key material passes through files and stdin only, never argv; nothing secret is returned.
"""

EXAMPLES = r"""
- name: Operator public keys (sets are encrypted to them)
  mojorust.dr.gpg_key_file:
    path: /etc/mojorust-backup/operator-keys.asc
    keys: "{{ backup_operator_keys }}"
    mode: "0644"

- name: Host signing key (root's file, readable by the backup user's group)
  mojorust.dr.gpg_key_file:
    path: /etc/mojorust-backup/signing-key.asc
    generate_uid: mojorust backup signing key (prod)
    revocation_path: /etc/mojorust-backup/signing-key.rev
    owner: root
    group: mojorust-backup
    mode: "0640"
  register: signing
"""

RETURN = r"""
fingerprint:
  description: Primary fingerprint of the signing key (with I(generate_uid)), or of the file's keys in order.
  returned: success
  type: raw
public_key:
  description: The signing key's armored public key.
  returned: with generate_uid
  type: str
previous_fingerprint:
  description: The signing key a rotation replaced.
  returned: when rotated
  type: str
previous_public_key:
  description: Its armored public key.
  returned: when rotated
  type: str
previous_revocation:
  description: Its revocation certificate (armored).
  returned: when rotated
  type: str
previous_revoked_key:
  description:
    - Its public key with the revocation merged in. Put it wherever the old key was trusted (a trusted-keys
      directory, the workstation's signing keys); a keyring built from it refuses the sets the old key signed.
  returned: when rotated
  type: str
"""

import os
import shutil
import subprocess
import tempfile

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


class Gpg:
    """gpg on a private, throwaway home."""

    def __init__(self):
        self.home = tempfile.mkdtemp(prefix="mojorust-keyfile-")

    def __call__(self, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["gpg", "--homedir", self.home, "--batch", "--no-tty", *args], input=data,
                              capture_output=True, check=False)  # fmt: skip

    def show_revoked(self, armored: bytes) -> list[dict]:
        """Like show, with each key's revocation state (validity 'r')."""
        result = self("--with-colons", "--import-options", "show-only", "--import", data=armored)
        keys = []
        for line in result.stdout.decode(errors="replace").splitlines():
            fields = line.split(":")
            if fields[0] in ("pub", "sec"):
                keys.append({"revoked": fields[1] == "r"})
        return keys

    def show(self, armored: bytes) -> list[dict]:
        result = self("--with-colons", "--import-options", "show-only", "--import", data=armored)
        return parse_colons(result.stdout.decode(errors="replace")) if result.returncode == 0 else []

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", self.home, "--kill", "all"], capture_output=True, check=False)
        shutil.rmtree(self.home, ignore_errors=True)


def generate(gpg: Gpg, uid: str) -> tuple[str, bytes, bytes, bytes]:
    """(fingerprint, armored secret key, armored public key, revocation certificate) of a new signing key."""
    made = gpg("--passphrase", "", "--quick-generate-key", uid, "ed25519", "sign", "never")
    if made.returncode != 0:
        raise RuntimeError(f"gpg could not generate the signing key: {made.stderr.decode(errors='replace').strip()}")
    fpr = next(k["fingerprint"] for k in parse_colons(gpg("--with-colons", "--list-secret-keys").stdout.decode())
               if uid in k["uids"])  # fmt: skip
    secret = gpg("--armor", "--export-secret-keys", fpr).stdout
    public = gpg("--armor", "--export", fpr).stdout
    with open(os.path.join(gpg.home, "openpgp-revocs.d", f"{fpr}.rev"), "rb") as handle:
        # gpg protects the stored certificate with a leading ':' on its armor line; an import wants it without
        revocation = handle.read().replace(
            b":-----BEGIN PGP PUBLIC KEY BLOCK-----", b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
        )
    return fpr, secret, public, revocation


def revoked_public_key(public_key: str, revocation: str) -> str:
    """The public key with its revocation merged in (what gpg exports once both are imported): a keyring that
    imports it refuses every signature the key made (REVKEYSIG). '' without a revocation certificate."""
    if not revocation:
        return ""
    gpg = Gpg()
    try:
        gpg("--import", data=public_key.encode() + b"\n" + revocation.encode())
        fpr = parse_colons(gpg("--with-colons", "--list-keys").stdout.decode())[0]["fingerprint"]
        return gpg("--armor", "--export", fpr).stdout.decode()
    finally:
        gpg.close()


def write_private(path: str, data: bytes, mode: int = 0o600) -> None:
    """A new file at path with data, atomically (written beside, fsynced, renamed)."""
    fd, tmp = tempfile.mkstemp(prefix=".", dir=os.path.dirname(path))
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def public_file(module, gpg: Gpg) -> dict:
    path, wanted = module.params["path"], module.params["keys"]
    parts = []
    for entry in wanted:
        expected = entry["fingerprint"].replace(" ", "").upper()
        shown = gpg.show(entry["public_key"].encode())
        if not shown:
            module.fail_json(msg=f"the key given for {expected} is not an armored OpenPGP public key")
        if shown[0]["fingerprint"] != expected:
            module.fail_json(msg=f"the key given has fingerprint {shown[0]['fingerprint']}, not the expected "
                                 f"{expected}: check the variable")  # fmt: skip
        if any(k["secret"] for k in shown):
            module.fail_json(msg=f"the key given for {expected} is a secret key; only public keys belong here")
        if len(shown) != 1:
            module.fail_json(msg=f"the key given for {expected} holds {len(shown)} keys; give each key on its own")
        key = entry["public_key"]
        if entry.get("revocation"):
            key = revoked_public_key(key, entry["revocation"])
            if not any(k["revoked"] for k in gpg.show_revoked(key.encode())):
                module.fail_json(msg=f"the revocation given for {expected} does not revoke it")
        parts.append(key.strip() + "\n")
    content = "".join(parts).encode()
    try:
        with open(path, "rb") as handle:
            current = handle.read()
    except FileNotFoundError:
        current = None
    fingerprints = [e["fingerprint"].replace(" ", "").upper() for e in wanted]
    result = {"changed": current != content, "fingerprint": fingerprints}
    if current != content:
        before = [k["fingerprint"] for k in gpg.show(current)] if current else []
        result["diff"] = {"before": "\n".join(before) + "\n", "after": "\n".join(fingerprints) + "\n"}
        if not module.check_mode:
            write_private(path, content, 0o644)
    return result


def signing_file(module, gpg: Gpg) -> dict:
    path, uid = module.params["path"], module.params["generate_uid"]
    revocation_path = module.params["revocation_path"]
    result: dict = {"changed": False}
    existing = None
    if os.path.exists(path):
        with open(path, "rb") as handle:
            existing = gpg.show(handle.read())
        if not existing or not existing[0]["secret"]:
            module.fail_json(msg=f"{path} does not hold a secret OpenPGP key; move it aside and rerun")
    if existing and not module.params["rotate"]:
        with open(path, "rb") as handle:
            gpg("--import", data=handle.read())
        fpr = existing[0]["fingerprint"]
        result.update(fingerprint=fpr, public_key=gpg("--armor", "--export", fpr).stdout.decode())
        return result
    result["changed"] = True
    if module.check_mode:
        return result
    fpr, secret, public, revocation = generate(gpg, uid)
    if existing:
        old_fpr = existing[0]["fingerprint"]
        old = Gpg()
        try:
            with open(path, "rb") as handle:
                old("--import", data=handle.read())
            result["previous_public_key"] = old("--armor", "--export", old_fpr).stdout.decode()
        finally:
            old.close()
        try:
            with open(revocation_path, "rb") as handle:
                result["previous_revocation"] = handle.read().decode()
        except FileNotFoundError:
            result["previous_revocation"] = ""
        result["previous_fingerprint"] = old_fpr
        previous = (result["previous_public_key"], result["previous_revocation"])
        result["previous_revoked_key"] = revoked_public_key(*previous) if result["previous_revocation"] else ""
        # The old key is distrusted by its revocation: one that does not revoke it (missing, or another key's after
        # an interrupted rotation) stops here, before anything changes, rather than pass the stolen key as revoked.
        if not result["previous_revocation"] or not any(
            k["revoked"] for k in gpg.show_revoked(result["previous_revoked_key"].encode())
        ):
            module.fail_json(
                msg=f"{revocation_path} does not revoke the current signing key {old_fpr}, so rotating would leave "
                "it trusted. Make its revocation certificate from the secret key in "
                f"{path} (gpg --gen-revoke {old_fpr}) into {revocation_path}, then rerun; nothing was changed"
            )
        shutil.copy2(path, f"{path}.{old_fpr}.retired")
        os.chmod(f"{path}.{old_fpr}.retired", 0o600)
    write_private(revocation_path, revocation, 0o600)
    write_private(path, secret, 0o600)  # the file attributes below give it its owner, group and mode
    result.update(fingerprint=fpr, public_key=public.decode())
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "keys": {
                "type": "list",
                "no_log": False,  # public keys and revocation certificates
                "elements": "dict",
                "options": {
                    "fingerprint": {"type": "str", "required": True},
                    "public_key": {"type": "str", "required": True},
                    "revocation": {"type": "str"},
                },
            },
            "generate_uid": {"type": "str"},
            "revocation_path": {"type": "path"},
            "rotate": {"type": "bool", "default": False},
        },
        required_one_of=[("keys", "generate_uid")],
        mutually_exclusive=[("keys", "generate_uid")],
        required_by={"generate_uid": "revocation_path"},
        add_file_common_args=True,
        supports_check_mode=True,
    )
    if module.params["rotate"] and not module.params["generate_uid"]:
        module.fail_json(msg="rotate needs generate_uid: only a signing key is rotated")
    if not module.get_bin_path("gpg"):
        module.fail_json(msg="gpg is not installed where gpg_key_file runs (apt install gnupg)")
    gpg = Gpg()
    try:
        result = signing_file(module, gpg) if module.params["generate_uid"] else public_file(module, gpg)
    except RuntimeError as error:
        module.fail_json(msg=str(error))
    finally:
        gpg.close()
    if os.path.exists(module.params["path"]):
        file_args = module.load_file_common_arguments(module.params)
        result["changed"] = module.set_fs_attributes_if_different(file_args, result["changed"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
