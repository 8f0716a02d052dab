"""systemd calendar events (OnCalendar=, systemd.time(7)), checked before they reach a timer unit.

A bad OnCalendar= does not fail `systemctl daemon-reload`: systemd logs it and the timer never fires, so the
backup silently stops. This accepts the forms the lab needs and refuses the rest with a hint; a seam test
(tests/test_backup_config.py) runs every accepted and refused sample through the real `systemd-analyze
calendar`, the parser the timer uses.

Accepted: the shorthands (daily, weekly, ...), and `[weekdays] [date] time` where the date is Y-M-D or M-D and
the time H:M[:S] (a date alone means midnight), each part `*`, a number, a range `a..b`, a list `a,b` or a repetition `x/n`. Time zones
are refused: the hosts run in UTC, and a schedule reads the same everywhere.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

SHORTHANDS = frozenset(
    {"minutely", "hourly", "daily", "weekly", "monthly", "quarterly", "semiannually", "yearly", "annually"}
)
_DAYS = "mon|tue|wed|thu|fri|sat|sun|monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_DAY_ITEM = rf"(?:{_DAYS})(?:\.\.(?:{_DAYS}))?"
_WEEKDAYS = re.compile(rf"^{_DAY_ITEM}(?:,{_DAY_ITEM})*$", re.IGNORECASE)
_NUM = r"\d{1,4}"
_ITEM = re.compile(rf"^(\*|{_NUM}(?:\.\.{_NUM})?)(?:/(\d{{1,4}}))?$")
_HINT = "use e.g. daily, 'Sun *-*-* 05:00:00' or '*-*-* 02:30:00' (systemd.time(7))"


def _component(text: str, lo: int, hi: int, what: str) -> None:
    for item in text.split(","):
        m = _ITEM.match(item)
        if not m:
            raise ValueError(f"'{item}' is not a valid {what} (a number, *, a..b or x/n)")
        values = [] if m.group(1) == "*" else [int(v) for v in m.group(1).split("..")]
        for v in values:
            if not lo <= v <= hi:
                raise ValueError(f"{what} {v} is outside {lo}..{hi}")
        if len(values) == 2 and values[0] > values[1]:
            raise ValueError(f"the {what} range {m.group(1)} runs backwards")
        if m.group(2) is not None and int(m.group(2)) == 0:
            raise ValueError(f"the {what} repetition /0 never advances")


def _date(text: str) -> None:
    parts = text.split("-")
    if len(parts) == 2:
        parts = ["*", *parts]
    if len(parts) != 3:
        raise ValueError(f"'{text}' is not a date (Y-M-D or M-D)")
    year, month, day = parts
    _component(year, 1970, 2199, "year")
    _component(month, 1, 12, "month")
    _component(day, 1, 31, "day")


def _time(text: str) -> None:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"'{text}' is not a time (H:M or H:M:S)")
    _component(parts[0], 0, 23, "hour")
    _component(parts[1], 0, 59, "minute")
    if len(parts) == 3:
        _component(parts[2], 0, 59, "second")


def check(value: str) -> str:
    """Return the schedule unchanged, or raise ValueError saying what is wrong and how to write it."""
    text = " ".join(value.split())
    if not text:
        raise ValueError(f"the schedule is empty; {_HINT}")
    if text.lower() in SHORTHANDS:
        return text
    words = text.split(" ")
    try:
        if _WEEKDAYS.match(words[0]):
            words = words[1:]
        if not words or len(words) > 2:
            raise ValueError("expected [weekdays] [date] time")
        if len(words) == 2:
            _date(words[0])
        elif "-" in words[0] and ":" not in words[0]:
            _date(words[0])  # a date alone runs at midnight, as systemd reads it
            return text
        if ":" not in words[-1]:
            raise ValueError(f"'{words[-1]}' is not a time (H:M or H:M:S; time zones are not accepted)")
        _time(words[-1])
    except ValueError as e:
        raise ValueError(f"'{value}' is not an OnCalendar schedule: {e}; {_HINT}") from None
    return text


OnCalendar = Annotated[str, AfterValidator(check)]
