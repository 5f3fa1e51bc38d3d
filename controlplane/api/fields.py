"""Field types and small shapes shared by several operations."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from controlplane.models.ids import ID_PATTERN
from controlplane.validation import FutureMoment, Moment

__all__ = ["Deleted", "Email", "FutureMoment", "Moment", "Name", "ObjectId", "Password"]

_SPACE_CHARACTERS = " \t\r\n"


def _name(value: str) -> str:
    value = value.strip(_SPACE_CHARACTERS)
    if not value:
        raise ValueError("a name needs something besides spaces")
    return value


Name = Annotated[
    str,
    Field(min_length=1, max_length=200, json_schema_extra={"pattern": r"[^ \t\r\n]"}),
    AfterValidator(_name),
]
Password = Annotated[
    str,
    Field(min_length=12, max_length=1024, description="At least 12 characters."),
]


# Spelled with explicit ranges, not \s, so that Python and the JSON Schema (ECMA 262) regex
# engines agree on every character: the document promises exactly what the server accepts.
_ADDRESS_CHARACTER = r"[^@\x00-\x20\x7f]"
_SPACE = r"[ \t\r\n]*"  # _SPACE_CHARACTERS, written for a regex
EMAIL_PATTERN = (
    rf"^{_SPACE}{_ADDRESS_CHARACTER}+@{_ADDRESS_CHARACTER}+\.{_ADDRESS_CHARACTER}+{_SPACE}$"
)
_EMAIL = re.compile(EMAIL_PATTERN.removesuffix("$") + r"\Z")


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("not a valid email address")
    return value.strip(_SPACE_CHARACTERS).lower()


ObjectId = Annotated[str, Field(pattern=ID_PATTERN, description="An id such as prj_3kq…")]

Email = Annotated[
    str,
    Field(max_length=320, json_schema_extra={"pattern": EMAIL_PATTERN}),
    AfterValidator(_email),
]


class Deleted(BaseModel):
    """The answer to a DELETE: what was deleted (or revoked)."""

    object: str
    id: str
    deleted: Literal[True] = True
