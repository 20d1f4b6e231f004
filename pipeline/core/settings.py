"""Typed settings: every configurable value is a field of a pydantic model, checked on load.

Unknown keys are errors (a typo such as `gate:` for `gates:` must not quietly restore the
defaults), values are range-checked, and every failure becomes an `InputError` that names
the file, the dotted key and the fix.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.core.errors import InputError

M = TypeVar("M", bound="Settings")


class Settings(BaseModel):
    """Frozen, strict about keys; subclasses declare fields with ranges and descriptions."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True,
                              allow_inf_nan=False)


def parse_settings(model: type[M], data: Any, file: str | Path | None, prefix: str = "") -> M:
    """`model(**data)`, with pydantic's first error turned into an InputError."""
    try:
        return model.model_validate({} if data is None else data)
    except ValidationError as exc:
        raise settings_error(exc, model, file, prefix) from None


def settings_error(exc: ValidationError, model: type[BaseModel], file: str | Path | None,
                   prefix: str = "") -> InputError:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
    key = ".".join([prefix, *loc] if prefix else loc) or None
    if err["type"] == "extra_forbidden":
        known = sorted(_fields_at(model, loc[:-1]))
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return InputError(file, key, "unknown key", f"{hint}use one of {known}")
    if err["type"] == "missing":
        return InputError(file, key, "required key is missing", "add it")
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return InputError(file, key, f"{err['msg']}{shown}",
                      "use a value in the documented range (see the field's description)")


def _fields_at(model: type[BaseModel], path: list[str]) -> list[str]:
    """The field names a nested model accepts at `path`."""
    current: Any = model
    for part in path:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
    return list(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
