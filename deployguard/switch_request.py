"""What a request to switch deploy mode may carry, checked alike for `manage.py deploy_mode` and for
POST /_deploy/mode: known fields only, each of its type, a non-blank reason to turn it on, and text the
state can hold and every page and log line can show (no NUL, no control characters, no line breaks)."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deployguard import state

MAX_TEXT_LENGTH = 2000
FIELDS_ON = ("mode", "reason", "expected_minutes", "deploy_id", "by")
FIELDS_OFF = ("mode", "reason", "by")
DEFAULT_OFF_REASON = "Deploy finished"
DEFAULT_BY = "token holder"
MAX_BY_LENGTH = 100

MODE_INVALID = '"mode" must be "on" or "off"'
UNKNOWN_FIELD = 'unknown field {field}: with "mode": "{mode}" send only {known}'
NULL_FIELD = '"{field}" is null: {what}, or leave "{field}" out'
NULL_REASON_ON = '"reason" is null: send why deploy mode goes on, as a non-blank string such as "release 42"'
REASON_MISSING = '"reason" is required with "mode": "on": send why, a non-blank string such as "release 42"'
NOT_TEXT = '"{field}" must be a string, not {kind}: {what}'
BLANK = '"{field}" is blank: {what}, or leave "{field}" out'
BLANK_REASON_ON = '"reason" is blank: send why deploy mode goes on, such as "release 42"'
NUL = '"{field}" must not contain NUL characters'
CONTROL = '"{field}" must be one line of printable text: it contains {character}'
TOO_LONG = '"{field}" must be at most {limit} characters'
MINUTES_NOT_NUMBER = '"expected_minutes" must be a number of minutes, not {kind}: send for example 10'

WHAT = {
    "reason": "send a non-blank string saying why",
    "deploy_id": 'send the deploy\'s id as a string such as "release-42"',
    "by": 'send who switches, as a string such as "ci"',
    "mode": 'send "on" or "off"',
    "expected_minutes": "send a number of minutes such as 10",
}


@dataclass(frozen=True)
class SwitchRequest:
    mode: str
    reason: str
    by: str
    deploy_id: str = ""
    expected_minutes: float | None = None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__
    )


def _unprintable(text: str) -> str | None:
    """The first character that is not printable text (a space is), described; None when all are."""
    for character in text:
        if not character.isprintable() and character != " ":
            name = unicodedata.name(character, "a control character")
            return f"U+{ord(character):04X} ({name})"
    return None


def text(field: str, value: Any, *, required: bool = False) -> str:
    """A text field's value, checked; ValueError saying what to send instead."""
    if value is None:
        raise ValueError(
            NULL_REASON_ON
            if field == "reason" and required
            else NULL_FIELD.format(field=field, what=WHAT[field])
        )
    if not isinstance(value, str):
        raise ValueError(NOT_TEXT.format(field=field, kind=_kind(value), what=WHAT[field]))
    if "\x00" in value:
        raise ValueError(NUL.format(field=field))
    if len(value) > MAX_TEXT_LENGTH:
        raise ValueError(TOO_LONG.format(field=field, limit=MAX_TEXT_LENGTH))
    character = _unprintable(value)
    if character is not None:
        raise ValueError(CONTROL.format(field=field, character=character))
    if not value.strip():
        raise ValueError(
            BLANK_REASON_ON if field == "reason" and required else BLANK.format(field=field, what=WHAT[field])
        )
    return value


def expected_minutes(value: Any, *, from_form: bool) -> float | None:
    """Minutes as a JSON number (or, from a form, its text); ValueError otherwise."""
    if value is None:
        raise ValueError(NULL_FIELD.format(field="expected_minutes", what=WHAT["expected_minutes"]))
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_number and not (from_form and isinstance(value, str)):
        raise ValueError(MINUTES_NOT_NUMBER.format(kind=_kind(value)))
    return state.valid_expected_minutes(value)


def parse(data: Mapping[str, Any], *, from_form: bool = False) -> SwitchRequest:
    """The switch a request body asks for; ValueError naming the first field that is wrong."""
    mode = data.get("mode")
    if not isinstance(mode, str) or mode.lower() not in ("on", "off"):
        raise ValueError(MODE_INVALID)
    mode = mode.lower()
    known = FIELDS_ON if mode == "on" else FIELDS_OFF
    unknown = [str(key) for key in data if key not in known]
    if unknown:
        raise ValueError(
            UNKNOWN_FIELD.format(
                field=", ".join(f'"{key[:40]}"' for key in sorted(unknown)[:5]),
                mode=mode,
                known=", ".join(known),
            )
        )
    by = text("by", data["by"])[:MAX_BY_LENGTH] if "by" in data else DEFAULT_BY
    if mode == "off":
        reason = text("reason", data["reason"]) if "reason" in data else DEFAULT_OFF_REASON
        return SwitchRequest(mode="off", reason=reason, by=by)
    if "reason" not in data:
        raise ValueError(REASON_MISSING)
    return SwitchRequest(
        mode="on",
        reason=text("reason", data["reason"], required=True),
        by=by,
        deploy_id=text("deploy_id", data["deploy_id"]) if "deploy_id" in data else "",
        expected_minutes=(
            expected_minutes(data["expected_minutes"], from_form=from_form)
            if "expected_minutes" in data
            else None
        ),
    )
