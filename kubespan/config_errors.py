"""ConfigError, the one error a bad config raises, and the wording of pydantic's errors in it.

pydantic checks the config; this module turns its first error into one line that starts with
the field's dotted path (`mesh.mtu: must be an integer between 1280 and 9000`), so the CLI
prints one line and no pydantic traceback reaches the user.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from annotated_types import Ge, Le
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

NON_EMPTY = "must be a non-empty string (quote values YAML would retype)"

# The error type of our own validators: their message is final and never echoes the input.
_OWN = "kubespan_config"
_UNKNOWN_KEY = ("extra_forbidden", "invalid_key")
_MESSAGES = {
    "missing": "required",
    "model_type": "must be a mapping",
    "bool_type": "must be true or false",
    "string_type": NON_EMPTY,
    "string_too_short": NON_EMPTY,
}
_INT_ERRORS = ("int_type", "greater_than_equal", "less_than_equal")


class ConfigError(ValueError):
    """The config is invalid; the message starts with the offending field's path."""


def invalid(message: str, *, field: str | None = None) -> PydanticCustomError:
    """The error a config validator raises. `field` names the key when a model validator
    judges one of the model's own fields (the error's location is then the model)."""
    # The message goes in as context, not as the template: input quoted in it may hold braces.
    context = {"message": message} if field is None else {"message": message, "field": field}
    return PydanticCustomError(_OWN, "{message}", context)


def config_error(exc: ValidationError, model: type[BaseModel]) -> ConfigError:
    """The first of `exc`'s errors (validating `model`) as a ConfigError."""
    errors = [e for e in exc.errors() if e["type"] != "default_factory_not_called"] or exc.errors()
    # A misspelt key also makes the real key "required"; the "did you mean" explains both.
    first = min(errors, key=lambda e: e["type"] not in _UNKNOWN_KEY)
    loc = tuple(first["loc"])
    if first["type"] == "invalid_key":
        return ConfigError(f"{_path(loc[:-1])}: keys must be strings, got {loc[-1]!r}")
    if first["type"] == "extra_forbidden":
        return ConfigError(f"{_path(loc)}: unknown key ({_suggest(model, loc)})")
    if first["type"] == _OWN:
        field = first.get("ctx", {}).get("field")
        return ConfigError(f"{_path((*loc, field) if field else loc)}: {first['msg']}")
    if first["type"] in _INT_ERRORS:
        return ConfigError(f"{_path(loc)}: {_int_message(model, loc)}")
    return ConfigError(f"{_path(loc)}: {_MESSAGES.get(first['type'], _lower(first))}")


def _path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or "config"


def _section(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model that validates the mapping at `loc`, if that is a model."""
    current: type[BaseModel] | None = model
    for part in loc:
        field = current.model_fields.get(part) if current and isinstance(part, str) else None
        annotation = field.annotation if field else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            current = annotation
        else:
            current = None
    return current


def _suggest(model: type[BaseModel], loc: Sequence[int | str]) -> str:
    section = _section(model, loc[:-1])
    allowed = tuple(section.model_fields) if section else ()
    hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    return f"did you mean {hint[0]!r}?" if hint else f"expected {', '.join(allowed)}"


def _int_message(model: type[BaseModel], loc: Sequence[int | str]) -> str:
    # pydantic reports a string and an out-of-range number differently and names one bound
    # at a time; the user is better served by the whole range either way.
    section = _section(model, loc[:-1])
    field = section.model_fields.get(str(loc[-1])) if section else None
    metadata = field.metadata if field else []
    low = next((m.ge for m in metadata if isinstance(m, Ge)), None)
    high = next((m.le for m in metadata if isinstance(m, Le)), None)
    if low is None or high is None:
        return "must be an integer"
    return f"must be an integer between {low} and {high}"


def _lower(error: ErrorDetails) -> str:
    # A pydantic message we have no wording for ("Input should be ..."); it quotes no input.
    message = error["msg"]
    return message[:1].lower() + message[1:]
