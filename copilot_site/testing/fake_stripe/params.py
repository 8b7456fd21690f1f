"""Parameter coercion for the fake Stripe API: form values arrive as strings, nested as the form parser
builds them, and bad values raise Stripe-shaped errors.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from copilot_site.testing.fake_stripe.errors import FakeStripeError

StripeObj = dict[str, Any]
Params = Mapping[str, Any]

_INT_RE = re.compile(r"-?\d+")
_MISSING = object()


def missing_param(name: str) -> FakeStripeError:
    return FakeStripeError(f"Missing required param: {name}.", code="parameter_missing", param=name)


def as_str(value: Any, param: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise FakeStripeError(f"Invalid string: {value!r}", param=param)


def opt_str(params: Params, key: str, param: str | None = None) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    return as_str(value, param or key)


def req_str(params: Params, key: str, param: str | None = None) -> str:
    value = opt_str(params, key, param)
    if value is None:
        raise missing_param(param or key)
    return value


def as_int(value: Any, param: str) -> int:
    if isinstance(value, bool):
        raise FakeStripeError(f"Invalid integer: {value}", param=param)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        return int(value.strip())
    raise FakeStripeError(f"Invalid integer: {value}", param=param)


def opt_int(params: Params, key: str, param: str | None = None) -> int | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    return as_int(value, param or key)


def as_bool(value: Any, param: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise FakeStripeError(f"Invalid boolean: {value}", param=param)


def sub_params(params: Params, key: str, param: str | None = None) -> Params:
    value = params.get(key)
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return value
    raise FakeStripeError(f"Invalid object: {param or key} must be a hash", param=param or key)


def list_param(params: Params, key: str, param: str | None = None) -> list[Any]:
    value = params.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping) and all(isinstance(k, str) and k.isdigit() for k in value):
        return [value[k] for k in sorted(value, key=int)]
    raise FakeStripeError(f"Invalid array: {param or key} must be an array", param=param or key)


def choice(params: Params, key: str, choices: Sequence[str], default: str) -> str:
    value = opt_str(params, key)
    if value is None:
        return default
    if value not in choices:
        allowed = ", ".join(f"`{c}`" for c in choices)
        raise FakeStripeError(f"Invalid {key}: must be one of {allowed}", param=key)
    return value


def apply_metadata(current: Mapping[str, str], value: Any, param: str = "metadata") -> dict[str, str]:
    """Stripe's metadata semantics: merge, ``""`` for a key unsets it, ``metadata=""`` clears all."""
    result = dict(current)
    if value is None:
        return result
    if value == "":
        return {}
    if not isinstance(value, Mapping):
        raise FakeStripeError("Invalid object: metadata must be a hash", param=param)
    for key, item in value.items():
        if item is None or item == "":
            result.pop(str(key), None)
        elif isinstance(item, Mapping | list):
            raise FakeStripeError(f"Invalid value for {param}[{key}]: must be a string", param=f"{param}[{key}]")
        else:
            result[str(key)] = str(item)
    return result


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> StripeObj:
    """Stripe's ``previous_attributes``: old values of the top-level keys that changed."""
    changed: StripeObj = {}
    for key, old in before.items():
        if after.get(key, _MISSING) != old:
            changed[key] = copy.deepcopy(old)
    for key in after:
        if key not in before:
            changed[key] = None
    return changed


def field(key: str) -> Callable[[StripeObj], Any]:
    def get(obj: StripeObj) -> Any:
        return obj.get(key)

    return get


def money(amount: int, currency: str) -> str:
    return f"{amount / 100:.2f} {currency.upper()}"


def day(ts: int) -> str:
    return time.strftime("%d %b %Y", time.gmtime(ts))
