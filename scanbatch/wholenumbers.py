"""The one reading of a whole number sent as text: a path segment, a query parameter or a
form field. Only the ASCII digits 0-9, at most MAX_DIGITS of them.

Python's own readings are too lenient for input from the network: `str.isdigit()` is true
for '²' (which `int()` then refuses: a 500), `int()` reads Arabic-Indic '١٢' as 12, and
pydantic's lax int accepts ' 12', '+12', '1_000' and '12.0'. A number of hundreds of digits
costs the parser and then the database (DuckDB's INTEGER is 32 bits). So every route reads
numbers through here, and a bad one is a 400 naming the parameter and its range."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from scanbatch.errors import BadRequest

# DuckDB INTEGER, the type of every id and index in the store.
MAX_ID = 2**31 - 1
MAX_DIGITS = len(str(MAX_ID))
_DIGITS = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}")
_NEGATIVE = re.compile(rf"-[0-9]{{1,{MAX_DIGITS}}}")


def number_problem(raw: str, low: int, high: int) -> str | None:
    """What is wrong with `raw` as a whole number from `low` to `high` (the words after the
    parameter's name), or None when it is one."""
    shown = raw if len(raw) <= 20 else raw[:20] + "…"
    if not _DIGITS.fullmatch(raw):
        if raw.isascii() and raw.isdigit():  # only digits, but too many of them
            return f"must be at most {high}, got a {len(raw)}-digit number"
        if _NEGATIVE.fullmatch(raw):
            return f"must be at least {low}, got {raw}"
        return f"must be a whole number from {low} to {high} (the digits 0-9 only), got '{shown}'"
    value = int(raw)
    if value < low:
        return f"must be at least {low}, got {value}"
    if value > high:
        return f"must be at most {high}, got {value}"
    return None


def whole_number(raw: str, name: str, low: int = 0, high: int = MAX_ID) -> int:
    """`raw` (a path segment, say) as a number from `low` to `high`, or a 400 naming `name`."""
    problem = number_problem(raw, low, high)
    if problem is not None:
        raise BadRequest(f"{name} {problem}")
    return int(raw)


def _text_number(low: int, high: int, optional: bool):
    def check(value: Any) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # a default, or a caller in Python
        problem = (
            number_problem(value, low, high)
            if isinstance(value, str)
            else f"must be a whole number from {low} to {high}"
        )
        if problem is not None:
            # The words go in the context: a template would read braces in the input.
            raise PydanticCustomError("whole_number", "{problem}", {"problem": problem})
        return int(value)

    return check


def WholeNumber(low: int = 0, high: int = MAX_ID, *, optional: bool = False, **field: Any) -> Any:
    """A pydantic field type for a number sent as text (query strings, form fields), read by
    `number_problem`; `optional` admits None; `field` goes to pydantic's Field (description,
    ...). The bounds are also in the JSON schema, so the OpenAPI document states them."""
    bounded = Annotated[int, Field(ge=low, le=high)]
    kind = bounded | None if optional else bounded
    return Annotated[kind, BeforeValidator(_text_number(low, high, optional)), Field(**field)]
