"""Small typed readers for plain-dict configuration; every failure names the field path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from server.errors import ValidationError

__all__ = [
    "as_mapping",
    "check_keys",
    "opt_bool",
    "opt_float",
    "opt_int",
    "opt_str",
    "str_set",
]


def as_mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(path, "must be an object")
    for key in value:
        if not isinstance(key, str):
            raise ValidationError(path, "keys must be strings")
    return value


def check_keys(data: Mapping[str, Any], allowed: set[str], path: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise ValidationError(where, f"unknown field (allowed: {', '.join(sorted(allowed))})")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def opt_int(
    data: Mapping[str, Any], key: str, path: str, default: int | None, *,
    minimum: int | None = None, maximum: int | None = None,
) -> int | None:
    if key not in data or data[key] is None:
        return default
    value = data[key]
    where = _join(path, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(where, "must be an integer")
    if minimum is not None and value < minimum:
        raise ValidationError(where, f"must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ValidationError(where, f"must be <= {maximum}")
    return value


def opt_float(
    data: Mapping[str, Any], key: str, path: str, default: float, *,
    minimum: float | None = None, maximum: float | None = None, exclusive_minimum: bool = False,
) -> float:
    if key not in data or data[key] is None:
        return default
    value = data[key]
    where = _join(path, key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(where, "must be a number")
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValidationError(where, "must be finite")
    if minimum is not None:
        if exclusive_minimum and number <= minimum:
            raise ValidationError(where, f"must be > {minimum}")
        if number < minimum:
            raise ValidationError(where, f"must be >= {minimum}")
    if maximum is not None and number > maximum:
        raise ValidationError(where, f"must be <= {maximum}")
    return number


def opt_bool(data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    if key not in data or data[key] is None:
        return default
    value = data[key]
    if not isinstance(value, bool):
        raise ValidationError(_join(path, key), "must be true or false")
    return value


def opt_str(
    data: Mapping[str, Any], key: str, path: str, default: str, *,
    choices: Sequence[str] | None = None,
) -> str:
    if key not in data or data[key] is None:
        return default
    value = data[key]
    where = _join(path, key)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(where, "must be a non-empty string")
    if choices is not None and value not in choices:
        raise ValidationError(where, f"must be one of: {', '.join(choices)}")
    return value


def str_set(value: Any, path: str, *, upper: bool = False, lower: bool = False) -> frozenset[str]:
    """A string or a list of strings → a set (case-normalised when asked)."""
    items: list[Any] = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValidationError(path, "must be a string or a non-empty list of strings")
    out: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise ValidationError(f"{path}[{index}]", "must be a non-empty string")
        text = item.strip()
        out.add(text.upper() if upper else text.lower() if lower else text)
    return frozenset(out)
