"""Filters on operator-given moments: the backup set id (its UTC time) a moment corresponds to."""

from __future__ import annotations

from datetime import UTC

from ansible.errors import AnsibleFilterError
from ansible_collections.mojorust.dr.plugins.module_utils.moment import MomentError, parse_moment


def moment_set_id(text: str, what: str = "breach_time") -> str:
    """'2026-11-26 01:02:03+01:00' -> '20261126T000203Z', comparable with set ids as strings."""
    try:
        return parse_moment(str(text), what).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    except MomentError as error:
        raise AnsibleFilterError(str(error)) from error


def moment_utc(text: str, what: str = "breach_time") -> str:
    """'2026-11-26 02:02:03+01:00' -> '2026-11-26 01:02:03 UTC', which journalctl --since and find -newermt read."""
    try:
        return parse_moment(str(text), what).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except MomentError as error:
        raise AnsibleFilterError(str(error)) from error


class FilterModule:
    def filters(self) -> dict:
        return {"moment_set_id": moment_set_id, "moment_utc": moment_utc}
