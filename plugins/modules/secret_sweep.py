#!/usr/bin/python
# Copyright (c) 2026, mojorust.dr maintainers
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""secret_sweep: find (and in shell histories, blank out) secret values left on a host after they were rotated."""

from __future__ import annotations

DOCUMENTATION = r"""
module: secret_sweep
short_description: Find where old secret values are still on a host, and blank them out of shell histories
version_added: 0.1.0
author: mojorust.dr maintainers (@mojorust)
description:
  - After a rotation, the old values must be nowhere on the host. This module reads every regular file under
    I(roots) (one file system each, skipping C(/proc), C(/sys), C(/dev) and I(exclude)), the environment of every
    running process, and reports the paths and process ids where any of I(values) still occurs. It never returns a
    value, only where it was found and which secret (by I(names)).
  - Files matching I(scrub) (shell and client histories by default) get every occurrence replaced by
    C([REVOKED]) first, in place, keeping owner and mode.
  - Run it as root, with C(no_log) on the task (the values are arguments).
options:
  values:
    description: The old secret values.
    type: list
    elements: str
    required: true
  names:
    description: A name for each value (same order), used in the findings.
    type: list
    elements: str
  roots:
    description: Directories searched.
    type: list
    elements: path
    default: [/]
  exclude:
    description: Paths not searched (besides /proc, /sys, /dev).
    type: list
    elements: path
    default: []
  scrub:
    description: Shell-style patterns of files in which the values are blanked out.
    type: list
    elements: str
    default: [/root/.*_history, /home/*/.*_history, /var/lib/postgresql/.*_history]
  max_file_size:
    description: Larger files are not read (bytes).
    type: int
    default: 268435456
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Old values are nowhere
  mojorust.dr.secret_sweep:
    values: "{{ old_values }}"
    names: "{{ old_names }}"
  no_log: true
  register: sweep
"""

RETURN = r"""
found:
  description: Where an old value still is (path or pid, and the secret's name); empty when it is nowhere.
  returned: success
  type: list
  elements: dict
scrubbed: {description: Files from which values were blanked out., returned: success, type: list, elements: str}
files_read: {description: How many files were read., returned: success, type: int}
"""

import glob
import os
import stat

from ansible.module_utils.basic import AnsibleModule

SKIP = ("/proc", "/sys", "/dev")
MARK = b"[REVOKED]"


def scrub_file(path: str, needles: list[bytes], check: bool) -> bool:
    with open(path, "rb") as handle:
        data = handle.read()
    cleaned = data
    for needle in needles:
        cleaned = cleaned.replace(needle, MARK)
    if cleaned == data:
        return False
    if not check:
        info = os.stat(path)
        temporary = f"{path}.scrub-{os.getpid()}"
        with open(temporary, "wb") as handle:
            handle.write(cleaned)
        os.chown(temporary, info.st_uid, info.st_gid)
        os.chmod(temporary, stat.S_IMODE(info.st_mode))
        os.replace(temporary, path)
    return True


def search(roots: list[str], excluded: set[str], needles: dict[bytes, str], limit: int) -> tuple[list[dict], int]:
    found, read = [], 0
    for root in roots:
        device = os.stat(root).st_dev
        for top, dirs, files in os.walk(root):
            dirs[:] = [
                d
                for d in dirs
                if (path := os.path.join(top, d)) not in excluded
                and not path.startswith(SKIP)
                and os.lstat(path).st_dev == device
            ]
            for name in files:
                path = os.path.join(top, name)
                try:
                    info = os.lstat(path)
                    if not stat.S_ISREG(info.st_mode) or info.st_size > limit or path in excluded:
                        continue
                    if name == "AnsiballZ_secret_sweep.py":  # this very run: its arguments are the values
                        continue
                    with open(path, "rb") as handle:
                        data = handle.read()
                except OSError:
                    continue
                read += 1
                found += [{"path": path, "secret": label} for needle, label in needles.items() if needle in data]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                data = handle.read()
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                data += b"\0" + handle.read()
        except OSError:
            continue
        found += [{"pid": int(pid), "secret": label} for needle, label in needles.items() if needle in data]
    return found, read


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "values": {"type": "list", "elements": "str", "required": True, "no_log": True},
            "names": {"type": "list", "elements": "str"},
            "roots": {"type": "list", "elements": "path", "default": ["/"]},
            "exclude": {"type": "list", "elements": "path", "default": []},
            "scrub": {
                "type": "list",
                "elements": "str",
                "default": ["/root/.*_history", "/home/*/.*_history", "/var/lib/postgresql/.*_history"],
            },
            "max_file_size": {"type": "int", "default": 268435456},
        },
        supports_check_mode=True,
    )
    values = [v for v in module.params["values"] if v]
    names = module.params["names"] or [f"secret {i + 1}" for i in range(len(values))]
    if len(names) != len(module.params["values"]):
        module.fail_json(msg="names must have one entry per value")
    needles = {v.encode(): n for v, n in zip(module.params["values"], names, strict=True) if v}
    scrubbed = [
        path
        for pattern in module.params["scrub"]
        for path in sorted(glob.glob(pattern))
        if os.path.isfile(path) and scrub_file(path, list(needles), module.check_mode)
    ]
    excluded = {os.path.abspath(p) for p in module.params["exclude"]}
    found, read = search(module.params["roots"], excluded, needles, module.params["max_file_size"])
    module.exit_json(changed=bool(scrubbed), found=found, scrubbed=scrubbed, files_read=read, checked=len(values))


if __name__ == "__main__":
    main()
