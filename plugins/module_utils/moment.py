"""A moment given by an operator (ISO 8601, UTC when no zone is given), read one way everywhere."""

from __future__ import annotations

import re
from datetime import UTC, datetime


class MomentError(ValueError):
    """The text is not a moment; the message says how to write one."""


def parse_moment(text: str, what: str = "target_time") -> datetime:
    """An aware datetime. A date alone is refused: it is what is left when `-e name=2026-11-26 01:02:03` loses its
    time to Ansible's k=v parsing, and midnight is never what was meant."""
    if not re.search(r"\d[ T]\d{1,2}:\d{2}", text.strip()):
        raise MomentError(
            f"{what} {text!r} has no time of day. Give date and time, quoted as one value: "
            f"-e \"{what}='2026-11-26 01:02:03+00:00'\" or -e {what}=2026-11-26T01:02:03+00:00"
        )
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError as error:
        raise MomentError(f"{what} {text!r} is not a time: use ISO 8601 (2026-11-26 01:02:03+00:00)") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
