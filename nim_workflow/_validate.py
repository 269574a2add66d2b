"""The engine's one door: every argument of every public call is checked here first.

A value the engine cannot store the same way on SQLite and PostgreSQL, or that would make no
sense as a case's history, is refused with :class:`InvalidInput` naming the argument and quoting
at most a short prefix of the value, before anything is read or written. The limits (also in
docs/reliability.md, "Input limits"):

* **identifiers** (case references, sites, actor ids, roles, triggers, deadline and pathway ids,
  stage ids): text of 1 to 100 characters, without surrounding spaces, and without control
  characters, bidirectional-text controls, line or paragraph separators or lone surrogates, so
  nothing stored can rewrite a coordinator's terminal or reorder what a report shows;
* **reasons**: text of at most 2,000 characters; newlines and tabs are kept, other control
  characters and bidirectional controls are refused;
* **dates** (date facts, closures) from 1990-01-01 to 2099-12-31, as ``datetime.date`` or exactly
  ``YYYY-MM-DD`` (not ``20260105`` nor an ISO week date); **instants** (``at=``, ``before=``)
  aware datetimes whose date falls in the same range;
* **versions and sequence numbers**: whole numbers (not booleans, not text) from 1 (a sequence
  number: 0) to 2,147,483,647, the most an integer column holds on both databases.

Whether an instant comes after the case's newest change is the engine's check, under the case
lock; this module knows nothing of the database.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from nim_workflow._errors import InvalidInput

__all__ = [
    "EARLIEST_DATE",
    "LATEST_DATE",
    "MAX_IDENTIFIER",
    "MAX_REASON",
    "MAX_WHOLE",
    "date_value",
    "fact_names",
    "identifier",
    "instant",
    "lookup",
    "optional_identifier",
    "optional_lookup",
    "reason",
    "roles",
    "sequence",
    "shown",
    "version",
]

MAX_IDENTIFIER = 100
MAX_REASON = 2000
#: The largest version or sequence number: what both databases' integer columns hold.
MAX_WHOLE = 2**31 - 1
EARLIEST_DATE = dt.date(1990, 1, 1)
LATEST_DATE = dt.date(2099, 12, 31)
#: How much of a rejected value a message quotes.
_SHOWN = 40
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Bidirectional embeddings, overrides and isolates: they reorder how text is displayed.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
# Control, format (bidi marks, zero-width joiners), line and paragraph separators, surrogates.
_REFUSED_IN_IDENTIFIERS = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def shown(value: object) -> str:
    """A short, printable rendering of a rejected value for an error message."""
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 3]}..."


def _kind(value: object) -> str:
    return type(value).__name__


def identifier(value: object, field: str, what: str | None = None) -> str:
    """``value`` as an identifier (see the module's limits); :class:`InvalidInput` otherwise."""
    what = what or field.replace("_", " ")
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text, not {_kind(value)} {shown(value)}", field=field)
    if not value or not value.strip():
        raise InvalidInput(f"{what} must not be empty", field=field)
    if len(value) > MAX_IDENTIFIER:
        raise InvalidInput(
            f"{what} {shown(value)} is {len(value):,} characters; at most {MAX_IDENTIFIER}",
            field=field,
        )
    if value != value.strip():
        raise InvalidInput(f"{what} {shown(value)} has surrounding spaces", field=field)
    for index, char in enumerate(value):
        if unicodedata.category(char) in _REFUSED_IN_IDENTIFIERS:
            raise InvalidInput(
                f"{what} {shown(value)} holds the control character U+{ord(char):04X} at "
                f"position {index + 1}",
                field=field,
            )
    return value


def lookup(value: object, field: str, what: str | None = None) -> str:
    """A name to look something up by: text, nothing more.

    Reads never write, so a stored name the door would refuse today (written by another tool,
    or before a limit existed) can still be read back; only the type is checked.
    """
    what = what or field.replace("_", " ")
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text, not {_kind(value)} {shown(value)}", field=field)
    if "\x00" in value:
        # No stored name can hold one (PostgreSQL text cannot), and PostgreSQL refuses to compare.
        raise InvalidInput(f"{what} {shown(value)} holds a NUL character", field=field)
    return value


def optional_lookup(value: object, field: str, what: str | None = None) -> str | None:
    """Like :func:`lookup`, with ``None`` allowed (a filter left out)."""
    return None if value is None else lookup(value, field, what)


def optional_identifier(value: object, field: str, what: str | None = None) -> str | None:
    """Like :func:`identifier`, with ``None`` allowed (a filter left out)."""
    return None if value is None else identifier(value, field, what)


def reason(value: object, field: str = "reason") -> str | None:
    """A reason as given (``None`` allowed; whether one is required is the pathway's business)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be text, not {_kind(value)} {shown(value)}", field=field)
    if len(value) > MAX_REASON:
        raise InvalidInput(
            f"{field} is {len(value):,} characters; at most {MAX_REASON:,}", field=field
        )
    for index, char in enumerate(value):
        if char in "\n\t":
            continue
        if unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI:
            raise InvalidInput(
                f"{field} {shown(value)} holds the control character U+{ord(char):04X} at "
                f"position {index + 1}",
                field=field,
            )
    return value


def roles(value: object) -> frozenset[str]:
    """An actor's roles: an iterable of identifiers (a lone string is one role)."""
    if isinstance(value, str):
        value = (value,)
    if isinstance(value, bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidInput(
            f"roles must be a set of role names, not {_kind(value)} {shown(value)}", field="roles"
        )
    return frozenset(identifier(role, "roles", "a role") for role in value)


def date_value(value: object, field: str) -> dt.date:
    """A date fact or closure: a ``datetime.date`` or exactly ``YYYY-MM-DD``, within range."""
    if isinstance(value, str):
        if not _ISO_DATE.fullmatch(value):
            raise InvalidInput(
                f"{field} must be a date written YYYY-MM-DD, not {shown(value)}", field=field
            )
        try:
            value = dt.date.fromisoformat(value)
        except ValueError:
            raise InvalidInput(f"{field}: {shown(value)} is not a real date", field=field) from None
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise InvalidInput(
            f"{field} must be a datetime.date or 'YYYY-MM-DD', not {_kind(value)} {shown(value)}",
            field=field,
        )
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise InvalidInput(
            f"{field} {value.isoformat()} is outside the dates the engine keeps "
            f"({EARLIEST_DATE.isoformat()} to {LATEST_DATE.isoformat()})",
            field=field,
        )
    return value


def instant(value: object, field: str = "at") -> dt.datetime:
    """An aware datetime within range, in UTC."""
    if not isinstance(value, dt.datetime):
        raise InvalidInput(
            f"{field} must be a timezone-aware datetime, not {_kind(value)} {shown(value)}",
            field=field,
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(
            f"{field}: {value.isoformat()} is a naive datetime; give a timezone-aware one",
            field=field,
        )
    try:
        in_utc = value.astimezone(dt.UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not EARLIEST_DATE <= in_utc.date() <= LATEST_DATE:
        raise InvalidInput(
            f"{field} {value.isoformat()} is outside the dates the engine keeps "
            f"({EARLIEST_DATE.isoformat()} to {LATEST_DATE.isoformat()})",
            field=field,
        )
    return in_utc


def version(value: object, field: str = "expected_version") -> int | None:
    """A case version the caller saw (``None``: don't check), a whole number of at least 1."""
    return _whole(value, field, minimum=1)


def sequence(value: object, field: str) -> int | None:
    """An audit sequence number or a count (``None`` allowed), a whole number of at least 0."""
    return _whole(value, field, minimum=0)


def _whole(value: object, field: str, *, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(
            f"{field} must be a whole number, not {_kind(value)} {shown(value)}", field=field
        )
    if not minimum <= value <= MAX_WHOLE:
        raise InvalidInput(
            f"{field} must be from {minimum} to {MAX_WHOLE:,}, not {shown(value)}", field=field
        )
    return value


def fact_names(value: object) -> Mapping[str, Any]:
    """The facts argument: a mapping whose keys are identifiers (values are checked per type)."""
    if not isinstance(value, Mapping):
        raise InvalidInput(
            f"facts must be a mapping of fact name to value, not {_kind(value)}", field="facts"
        )
    for name in value:
        identifier(name, "facts", "a fact name")
    return value
