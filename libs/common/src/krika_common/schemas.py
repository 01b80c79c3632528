"""Request bodies: `Input` refuses unknown fields and control characters in every string.

A NUL byte cannot be stored by PostgreSQL and the other C0 control characters have no place
in marketplace text (they forge log lines and confuse renderers): every string of an `Input`
model, however deeply nested in lists or dicts, is refused (422, type `control_characters`)
when it holds one, except tab, line feed and carriage return. `Line` refuses those too, for
single-line values such as names and e-mail addresses, and suits query parameters as well.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_IN_LINE = re.compile(r"[\x00-\x1f\x7f]")


def _refuse(pattern: re.Pattern[str], value: str) -> str:
    if pattern.search(value):
        raise PydanticCustomError("control_characters", "Control characters are not allowed")
    return value


def _check(value: Any) -> None:
    if isinstance(value, str):
        _refuse(_IN_TEXT, value)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _check(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key)
            _check(item)


def _line(value: str) -> str:
    return _refuse(_IN_LINE, value)


# A single line of text: no control characters at all.
Line = Annotated[str, AfterValidator(_line)]


class Input(BaseModel):
    """Base of every request body: unknown fields and control characters are refused."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        _check(value)
        return value
