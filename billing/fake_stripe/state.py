"""In-memory state machine of the fake Stripe API.

Pure Python, no HTTP: every public method takes the decoded request parameters
(the nested dict the form parser in ``server.py`` produces, values still strings
as Stripe receives them) and returns a snapshot (a deep copy) of the resulting
Stripe object.  Errors are raised as :class:`FakeStripeError`, which carries the
HTTP status and the Stripe-shaped error body.

One re-entrant lock (``state.lock``) guards everything; the HTTP layer holds it
for the whole of a request so idempotency checks and the work they protect are
atomic.

Object shapes follow the API version the installed ``stripe`` SDK pins
(``stripe.api_version``, a ``*.clover`` version): invoices point at their
subscription through ``parent.subscription_details`` and at their payments
through ``payments`` (expandable) / ``/v1/invoice_payments``, invoice lines carry
``pricing.price_details`` and ``parent.subscription_item_details``.  As the brief
asks, subscriptions carry ``current_period_start``/``current_period_end`` both on
the subscription (older versions) and on each item (where current versions put
them).
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

import stripe

__all__ = [
    "DAY",
    "FakeStripeError",
    "FakeStripeState",
    "StoredResponse",
    "StripeObj",
    "new_id",
]

logger = logging.getLogger(__name__)

StripeObj = dict[str, Any]
Params = Mapping[str, Any]

DAY = 86_400
PERIOD_SECONDS: dict[str, int] = {"day": DAY, "week": 7 * DAY, "month": 30 * DAY, "year": 365 * DAY}
PRORATION_BEHAVIORS = ("create_prorations", "none", "always_invoice")
_ID_ALPHABET = string.ascii_letters + string.digits
_INT_RE = re.compile(r"-?\d+")
_MISSING = object()


def new_id(prefix: str, length: int = 24) -> str:
    """An id shaped like Stripe's: ``prefix`` followed by random alphanumerics."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _wall_clock() -> int:
    return int(time.time())


class FakeStripeError(Exception):
    """A Stripe API error: HTTP status plus the ``{"error": {...}}`` body."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        should_retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.should_retry = should_retry

    def body(self) -> StripeObj:
        error: StripeObj = {"type": self.error_type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        if self.decline_code is not None:
            error["decline_code"] = self.decline_code
        return {"error": error}


@dataclass(frozen=True)
class StoredResponse:
    """A response remembered under an ``Idempotency-Key``."""

    method: str
    path: str
    params: StripeObj
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]


@dataclass
class _FailureRule:
    path_prefix: str
    method: str | None
    remaining: int
    error: FakeStripeError

    def describe(self) -> StripeObj:
        return {
            "path_prefix": self.path_prefix,
            "method": self.method,
            "remaining": self.remaining,
            "status": self.error.status,
            "error": self.error.body()["error"],
        }


@dataclass
class _ItemChange:
    item_id: str
    old_price: StripeObj | None
    old_quantity: int
    new_price: StripeObj | None
    new_quantity: int


# ---------------------------------------------------------------------------
# parameter coercion (values arrive as form strings)
# ---------------------------------------------------------------------------


def _missing_param(name: str) -> FakeStripeError:
    return FakeStripeError(f"Missing required param: {name}.", code="parameter_missing", param=name)


def _as_str(value: Any, param: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise FakeStripeError(f"Invalid string: {value!r}", param=param)


def _opt_str(params: Params, key: str, param: str | None = None) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    return _as_str(value, param or key)


def _req_str(params: Params, key: str, param: str | None = None) -> str:
    value = _opt_str(params, key, param)
    if value is None:
        raise _missing_param(param or key)
    return value


def _as_int(value: Any, param: str) -> int:
    if isinstance(value, bool):
        raise FakeStripeError(f"Invalid integer: {value}", param=param)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        return int(value.strip())
    raise FakeStripeError(f"Invalid integer: {value}", param=param)


def _opt_int(params: Params, key: str, param: str | None = None) -> int | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    return _as_int(value, param or key)


def _as_bool(value: Any, param: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise FakeStripeError(f"Invalid boolean: {value}", param=param)


def _sub_params(params: Params, key: str, param: str | None = None) -> Params:
    value = params.get(key)
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return value
    raise FakeStripeError(f"Invalid object: {param or key} must be a hash", param=param or key)


def _list_param(params: Params, key: str, param: str | None = None) -> list[Any]:
    value = params.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping) and all(isinstance(k, str) and k.isdigit() for k in value):
        return [value[k] for k in sorted(value, key=int)]
    raise FakeStripeError(f"Invalid array: {param or key} must be an array", param=param or key)


def _choice(params: Params, key: str, choices: Sequence[str], default: str) -> str:
    value = _opt_str(params, key)
    if value is None:
        return default
    if value not in choices:
        allowed = ", ".join(f"`{c}`" for c in choices)
        raise FakeStripeError(f"Invalid {key}: must be one of {allowed}", param=key)
    return value


def _apply_metadata(current: Mapping[str, str], value: Any, param: str = "metadata") -> dict[str, str]:
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


def _diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> StripeObj:
    """Stripe's ``previous_attributes``: old values of the top-level keys that changed."""
    changed: StripeObj = {}
    for key, old in before.items():
        if after.get(key, _MISSING) != old:
            changed[key] = copy.deepcopy(old)
    for key in after:
        if key not in before:
            changed[key] = None
    return changed


def _field(key: str) -> Callable[[StripeObj], Any]:
    def get(obj: StripeObj) -> Any:
        return obj.get(key)

    return get


def _money(amount: int, currency: str) -> str:
    return f"{amount / 100:.2f} {currency.upper()}"


def _day(ts: int) -> str:
    return time.strftime("%d %b %Y", time.gmtime(ts))


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(fn: Callable[Concatenate[FakeStripeState, _P], _R]) -> Callable[Concatenate[FakeStripeState, _P], _R]:
    @wraps(fn)
    def wrapper(self: FakeStripeState, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self.lock:
            return fn(self, *args, **kwargs)

    return wrapper


def _mutation(fn: Callable[Concatenate[FakeStripeState, _P], _R]) -> Callable[Concatenate[FakeStripeState, _P], _R]:
    """Locked and all-or-nothing: an error rolls every object back, and listeners
    (webhook forwarding) only hear about events of operations that succeeded."""

    @wraps(fn)
    def wrapper(self: FakeStripeState, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self.lock:
            if self._depth:
                return fn(self, *args, **kwargs)
            snapshot = self._snapshot()
            self._depth += 1
            try:
                result = fn(self, *args, **kwargs)
            except BaseException:
                self._restore(snapshot)
                raise
            finally:
                self._depth -= 1
            self._publish()
            return result

    return wrapper


class FakeStripeState:
    """All objects, events, the request log, idempotency records and injected failures."""

    lock: threading.RLock
    base_url: str
    api_version: str
    clock: Callable[[], int]
    event_listeners: list[Callable[[StripeObj], None]]
    objects: dict[str, StripeObj]
    events: list[StripeObj]
    requests: list[StripeObj]

    def __init__(
        self,
        *,
        base_url: str = "http://127.0.0.1:12111",
        api_version: str | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version or stripe.api_version
        self.clock = clock or _wall_clock
        self.event_listeners = []
        self._clear()

    def _clear(self) -> None:
        self.objects = {}
        self.events = []
        self.requests = []
        self._idempotency: dict[str, StoredResponse] = {}
        self._failures: list[_FailureRule] = []
        self._line_items: dict[str, list[StripeObj]] = {}
        self._pending_prorations: dict[str, list[StripeObj]] = {}
        self._checkout_extra: dict[str, StripeObj] = {}
        self._request_id: str | None = None
        self._idempotency_key: str | None = None
        self._depth = 0
        self._outbox: list[StripeObj] = []

    def _snapshot(self) -> tuple[dict[str, StripeObj], int, StripeObj]:
        objects = {k: (v if v.get("object") == "event" else copy.deepcopy(v)) for k, v in self.objects.items()}
        extras = copy.deepcopy(
            {
                "line_items": self._line_items,
                "pending_prorations": self._pending_prorations,
                "checkout_extra": self._checkout_extra,
            }
        )
        return objects, len(self.events), extras

    def _restore(self, snapshot: tuple[dict[str, StripeObj], int, StripeObj]) -> None:
        objects, event_count, extras = snapshot
        self.objects = objects
        del self.events[event_count:]
        self._line_items = extras["line_items"]
        self._pending_prorations = extras["pending_prorations"]
        self._checkout_extra = extras["checkout_extra"]
        self._outbox.clear()

    def _publish(self) -> None:
        outbox, self._outbox = self._outbox, []
        for event in outbox:
            for listener in list(self.event_listeners):
                try:
                    listener(copy.deepcopy(event))
                except Exception:
                    logger.exception("fake stripe event listener failed for %s", event["id"])

    @_locked
    def reset(self) -> None:
        """Forget every object, event, logged request, idempotency key and pending failure."""
        self._clear()

    # ------------------------------------------------------------------
    # request bookkeeping (used by the HTTP layer)
    # ------------------------------------------------------------------

    @contextmanager
    def request_context(self, request_id: str | None, idempotency_key: str | None) -> Iterator[None]:
        """Events emitted inside carry ``request: {id, idempotency_key}`` of this request."""
        with self.lock:
            previous = (self._request_id, self._idempotency_key)
            self._request_id, self._idempotency_key = request_id, idempotency_key
            try:
                yield
            finally:
                self._request_id, self._idempotency_key = previous

    @_locked
    def record_request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        idempotency_key: str | None,
        stripe_version: str | None,
    ) -> None:
        self.requests.append(
            {
                "method": method,
                "path": path,
                "params": copy.deepcopy(dict(params)),
                "idempotency_key": idempotency_key,
                "stripe_version": stripe_version,
            }
        )

    @_locked
    def logged_requests(self) -> list[StripeObj]:
        return copy.deepcopy(self.requests)

    @_locked
    def idempotent_response(self, key: str) -> StoredResponse | None:
        return self._idempotency.get(key)

    @_locked
    def store_idempotent_response(self, key: str, response: StoredResponse) -> None:
        self._idempotency.setdefault(key, response)

    @_locked
    def fail_next(
        self,
        path_prefix: str,
        status: int = 500,
        *,
        method: str | None = None,
        code: str | None = None,
        message: str | None = None,
        error_type: str | None = None,
        decline_code: str | None = None,
        times: int = 1,
    ) -> StripeObj:
        """Make the next ``times`` API requests whose path starts with ``path_prefix`` fail."""
        if not path_prefix.startswith("/"):
            raise FakeStripeError("path_prefix must start with '/'", param="path_prefix")
        if status < 400 or status > 599:
            raise FakeStripeError("status must be an HTTP error status (400-599)", param="status")
        if times < 1:
            raise FakeStripeError("times must be at least 1", param="times")
        if status == 402:
            error = FakeStripeError(
                message or "Your card was declined.",
                status=402,
                error_type=error_type or "card_error",
                code=code or "card_declined",
                decline_code=decline_code or (None if code not in (None, "card_declined") else "generic_decline"),
                param=None,
            )
        elif status == 429:
            error = FakeStripeError(
                message or "Too many requests hit the API too quickly.",
                status=429,
                error_type=error_type or "invalid_request_error",
                code=code or "rate_limit",
            )
        elif status >= 500:
            error = FakeStripeError(
                message or "An unknown error occurred (injected by the fake Stripe server).",
                status=status,
                error_type=error_type or "api_error",
                code=code,
            )
        else:
            error = FakeStripeError(
                message or "Injected failure (fake Stripe server).",
                status=status,
                error_type=error_type or "invalid_request_error",
                code=code,
            )
        error.should_retry = False
        rule = _FailureRule(path_prefix, method.upper() if method else None, times, error)
        self._failures.append(rule)
        return rule.describe()

    @_locked
    def pending_failures(self) -> list[StripeObj]:
        return [rule.describe() for rule in self._failures]

    @_locked
    def take_failure(self, method: str, path: str) -> FakeStripeError | None:
        for rule in self._failures:
            if path.startswith(rule.path_prefix) and (rule.method is None or rule.method == method.upper()):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._failures.remove(rule)
                return rule.error
        return None

    # ------------------------------------------------------------------
    # generic object plumbing
    # ------------------------------------------------------------------

    def _now(self) -> int:
        return self.clock()

    def _store(self, obj: StripeObj) -> StripeObj:
        self.objects[obj["id"]] = obj
        return obj

    def _get(
        self, kind: str, obj_id: str, *, label: str | None = None, param: str = "id", status: int = 404
    ) -> StripeObj:
        obj = self.objects.get(obj_id)
        if obj is None or obj.get("object") != kind:
            raise FakeStripeError(
                f"No such {label or kind}: '{obj_id}'", status=status, code="resource_missing", param=param
            )
        return obj

    def _all(self, kind: str) -> list[StripeObj]:
        """Objects of one kind, newest first (Stripe's list order)."""
        return [obj for obj in reversed(self.objects.values()) if obj.get("object") == kind]

    def _emit(self, event_type: str, obj: Mapping[str, Any], previous: Mapping[str, Any] | None = None) -> StripeObj:
        data: StripeObj = {"object": copy.deepcopy(dict(obj))}
        if previous is not None:
            data["previous_attributes"] = copy.deepcopy(dict(previous))
        event: StripeObj = {
            "id": new_id("evt_"),
            "object": "event",
            "api_version": self.api_version,
            "created": self._now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": self._request_id, "idempotency_key": self._idempotency_key},
            "type": event_type,
        }
        self._store(event)
        self.events.append(event)
        self._outbox.append(event)
        if not self._depth:
            self._publish()
        return event

    def _emit_updated(self, event_type: str, obj: StripeObj, before: Mapping[str, Any]) -> StripeObj | None:
        previous = _diff(before, obj)
        if not previous:
            return None
        return self._emit(event_type, obj, previous)

    def _paginate(self, objs: list[StripeObj], params: Params, url: str) -> StripeObj:
        objs = self._filter_created(objs, params)
        limit = _opt_int(params, "limit")
        if limit is None:
            limit = 10
        if limit < 1 or limit > 100:
            raise FakeStripeError("Invalid limit: must be between 1 and 100", param="limit")
        ids = [obj["id"] for obj in objs]
        starting_after = _opt_str(params, "starting_after")
        ending_before = _opt_str(params, "ending_before")
        if starting_after is not None:
            if starting_after not in ids:
                raise FakeStripeError(
                    f"No such object: '{starting_after}'", code="resource_missing", param="starting_after"
                )
            rest = objs[ids.index(starting_after) + 1 :]
            page, has_more = rest[:limit], len(rest) > limit
        elif ending_before is not None:
            if ending_before not in ids:
                raise FakeStripeError(
                    f"No such object: '{ending_before}'", code="resource_missing", param="ending_before"
                )
            before = objs[: ids.index(ending_before)]
            page, has_more = before[-limit:], len(before) > limit
        else:
            page, has_more = objs[:limit], len(objs) > limit
        return {"object": "list", "data": copy.deepcopy(page), "has_more": has_more, "url": url}

    @staticmethod
    def _filter_created(objs: list[StripeObj], params: Params) -> list[StripeObj]:
        created = params.get("created")
        if created is None or created == "":
            return objs
        if not isinstance(created, Mapping):
            exact = _as_int(created, "created")
            return [obj for obj in objs if obj.get("created") == exact]
        bounds = {op: _as_int(v, f"created[{op}]") for op, v in created.items() if op in ("gt", "gte", "lt", "lte")}

        def ok(obj: StripeObj) -> bool:
            ts: int = obj.get("created", 0)
            return (
                ("gt" not in bounds or ts > bounds["gt"])
                and ("gte" not in bounds or ts >= bounds["gte"])
                and ("lt" not in bounds or ts < bounds["lt"])
                and ("lte" not in bounds or ts <= bounds["lte"])
            )

        return [obj for obj in objs if ok(obj)]

    @staticmethod
    def _filter_eq(
        objs: list[StripeObj], params: Params, fields: Mapping[str, Callable[[StripeObj], Any]]
    ) -> list[StripeObj]:
        for key, getter in fields.items():
            wanted = _opt_str(params, key)
            if wanted is not None:
                objs = [obj for obj in objs if getter(obj) == wanted]
        return objs

    # ------------------------------------------------------------------
    # expansion
    # ------------------------------------------------------------------

    @_locked
    def expand(self, obj: StripeObj, paths: Sequence[str]) -> StripeObj:
        """Apply Stripe's ``expand[]`` (dotted paths, ``data.`` for lists) to a response."""
        result = copy.deepcopy(obj)
        for path in paths:
            if path:
                self._expand_path(result, path.split("."))
        return result

    def _expand_path(self, node: Any, parts: list[str]) -> None:
        if isinstance(node, list):
            for item in node:
                self._expand_path(item, parts)
            return
        if not isinstance(node, dict) or not parts:
            return
        head, rest = parts[0], parts[1:]
        if head not in node:
            virtual = self._virtual_field(node, head)
            if virtual is None:
                return
            node[head] = virtual
        value = node[head]
        if isinstance(value, str) and value in self.objects:
            node[head] = copy.deepcopy(self.objects[value])
            value = node[head]
        if rest:
            self._expand_path(value, rest)

    def _virtual_field(self, node: StripeObj, field: str) -> StripeObj | None:
        """Fields Stripe only includes when expanded."""
        kind, obj_id = node.get("object"), node.get("id")
        if kind == "checkout.session" and field == "line_items" and isinstance(obj_id, str):
            items = self._line_items.get(obj_id, [])
            return self._paginate(list(items), {"limit": 100}, f"/v1/checkout/sessions/{obj_id}/line_items")
        if kind == "invoice" and field == "payments":
            payments = [p for p in self._all("invoice_payment") if p["invoice"] == obj_id]
            return self._paginate(payments, {"limit": 100}, f"/v1/invoice_payments?invoice={obj_id}")
        if kind == "customer" and field == "subscriptions":
            subs = [s for s in self._all("subscription") if s["customer"] == obj_id and s["status"] != "canceled"]
            return self._paginate(subs, {"limit": 100}, f"/v1/customers/{obj_id}/subscriptions")
        return None

    # ------------------------------------------------------------------
    # retrieval used by several endpoints
    # ------------------------------------------------------------------

    @_locked
    def retrieve(self, kind: str, obj_id: str, label: str | None = None) -> StripeObj:
        return copy.deepcopy(self._get(kind, obj_id, label=label))

    @_locked
    def list_events(self, params: Params) -> StripeObj:
        events = self._all("event")
        wanted_type = _opt_str(params, "type")
        if wanted_type is not None:
            events = [e for e in events if fnmatch.fnmatchcase(e["type"], wanted_type)]
        types = [str(t) for t in _list_param(params, "types")]
        if types:
            events = [e for e in events if any(fnmatch.fnmatchcase(e["type"], t) for t in types)]
        return self._paginate(events, params, "/v1/events")

    @_locked
    def all_events(self) -> list[StripeObj]:
        """Every event, oldest first (for tests)."""
        return copy.deepcopy(self.events)

    def _events_since(self, mark: int) -> list[StripeObj]:
        return copy.deepcopy(self.events[mark:])

    # ------------------------------------------------------------------
    # customers
    # ------------------------------------------------------------------

    def _customer(self, customer_id: str, param: str = "customer") -> StripeObj:
        customer = self._get("customer", customer_id, param=param, status=400)
        if customer.get("deleted"):
            raise FakeStripeError(f"No such customer: '{customer_id}'", code="resource_missing", param=param)
        return customer

    def _new_customer(
        self, *, email: str | None, name: str | None, metadata: Mapping[str, str], params: Params | None = None
    ) -> StripeObj:
        customer: StripeObj = {
            "id": new_id("cus_", 14),
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": self._now(),
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": None,
            "discount": None,
            "email": email,
            "invoice_prefix": "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8)),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": dict(metadata),
            "name": name,
            "next_invoice_sequence": 1,
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        if params is not None:
            self._apply_customer_fields(customer, params)
        self._store(customer)
        self._emit("customer.created", customer)
        return customer

    @_mutation
    def create_customer(self, params: Params) -> StripeObj:
        customer = self._new_customer(
            email=_opt_str(params, "email"),
            name=_opt_str(params, "name"),
            metadata=_apply_metadata({}, params.get("metadata")),
            params=params,
        )
        return copy.deepcopy(customer)

    @staticmethod
    def _apply_customer_fields(customer: StripeObj, params: Params) -> None:
        for key in ("email", "name", "description", "phone"):
            if key in params:
                customer[key] = _opt_str(params, key)
        if "metadata" in params:
            customer["metadata"] = _apply_metadata(customer["metadata"], params["metadata"])
        if "preferred_locales" in params:
            customer["preferred_locales"] = [str(x) for x in _list_param(params, "preferred_locales")]
        invoice_settings = _sub_params(params, "invoice_settings")
        if "default_payment_method" in invoice_settings:
            customer["invoice_settings"]["default_payment_method"] = _opt_str(
                invoice_settings, "default_payment_method", "invoice_settings[default_payment_method]"
            )

    @_mutation
    def update_customer(self, customer_id: str, params: Params) -> StripeObj:
        customer = self._get("customer", customer_id)
        if customer.get("deleted"):
            raise FakeStripeError(f"No such customer: '{customer_id}'", status=404, code="resource_missing", param="id")
        before = copy.deepcopy(customer)
        self._apply_customer_fields(customer, params)
        self._emit_updated("customer.updated", customer, before)
        return copy.deepcopy(customer)

    @_mutation
    def delete_customer(self, customer_id: str) -> StripeObj:
        customer = self._get("customer", customer_id)
        if customer.get("deleted"):
            raise FakeStripeError(f"No such customer: '{customer_id}'", status=404, code="resource_missing", param="id")
        for sub in self._all("subscription"):
            if sub["customer"] == customer_id and sub["status"] not in ("canceled", "incomplete_expired"):
                self._end_subscription(sub, at=self._now(), reason="cancellation_requested")
        snapshot = copy.deepcopy(customer)
        stub: StripeObj = {"id": customer_id, "object": "customer", "deleted": True}
        self.objects[customer_id] = stub
        self._emit("customer.deleted", snapshot)
        return copy.deepcopy(stub)

    @_locked
    def list_customers(self, params: Params) -> StripeObj:
        customers = [c for c in self._all("customer") if not c.get("deleted")]
        customers = self._filter_eq(customers, params, {"email": lambda c: c.get("email")})
        return self._paginate(customers, params, "/v1/customers")

    # ------------------------------------------------------------------
    # products and prices
    # ------------------------------------------------------------------

    def _new_product(
        self,
        *,
        name: str,
        product_id: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, str] | None = None,
        active: bool = True,
        emit: bool = True,
    ) -> StripeObj:
        now = self._now()
        product_id = product_id or new_id("prod_", 14)
        if product_id in self.objects:
            raise FakeStripeError(f"Product already exists: '{product_id}'", code="resource_already_exists", param="id")
        product: StripeObj = {
            "id": product_id,
            "object": "product",
            "active": active,
            "attributes": [],
            "created": now,
            "default_price": None,
            "description": description,
            "images": [],
            "livemode": False,
            "marketing_features": [],
            "metadata": dict(metadata or {}),
            "name": name,
            "package_dimensions": None,
            "shippable": None,
            "statement_descriptor": None,
            "tax_code": None,
            "type": "service",
            "unit_label": None,
            "updated": now,
            "url": None,
        }
        self._store(product)
        if emit:
            self._emit("product.created", product)
        return product

    @_mutation
    def create_product(self, params: Params) -> StripeObj:
        active = _as_bool(params["active"], "active") if "active" in params else True
        product = self._new_product(
            name=_req_str(params, "name"),
            product_id=_opt_str(params, "id"),
            description=_opt_str(params, "description"),
            metadata=_apply_metadata({}, params.get("metadata")),
            active=active,
        )
        return copy.deepcopy(product)

    @_mutation
    def update_product(self, product_id: str, params: Params) -> StripeObj:
        product = self._get("product", product_id)
        before = copy.deepcopy(product)
        for key in ("name", "description"):
            if key in params:
                product[key] = _opt_str(params, key)
        if "active" in params:
            product["active"] = _as_bool(params["active"], "active")
        if "default_price" in params:
            price_id = _opt_str(params, "default_price")
            if price_id is not None:
                self._price(price_id, "default_price")
            product["default_price"] = price_id
        if "metadata" in params:
            product["metadata"] = _apply_metadata(product["metadata"], params["metadata"])
        if product != before:
            product["updated"] = self._now()
        self._emit_updated("product.updated", product, before)
        return copy.deepcopy(product)

    @_locked
    def list_products(self, params: Params) -> StripeObj:
        products = self._all("product")
        if "active" in params:
            active = _as_bool(params["active"], "active")
            products = [p for p in products if p["active"] == active]
        return self._paginate(products, params, "/v1/products")

    def _price(self, price_id: str, param: str) -> StripeObj:
        return self._get("price", price_id, param=param, status=400)

    def _new_price(
        self,
        *,
        product_id: str,
        unit_amount: int,
        currency: str,
        interval: str | None,
        interval_count: int = 1,
        lookup_key: str | None = None,
        transfer_lookup_key: bool = False,
        nickname: str | None = None,
        metadata: Mapping[str, str] | None = None,
        active: bool = True,
        emit: bool = True,
    ) -> StripeObj:
        if unit_amount < 0:
            raise FakeStripeError("Invalid unit_amount: must be at least 0", param="unit_amount")
        if interval is not None and interval not in PERIOD_SECONDS:
            raise FakeStripeError(
                "Invalid recurring[interval]: must be one of day, month, week, or year", param="recurring[interval]"
            )
        if interval_count < 1:
            raise FakeStripeError("Invalid recurring[interval_count]", param="recurring[interval_count]")
        if lookup_key is not None:
            for other in self._all("price"):
                if other["lookup_key"] == lookup_key:
                    if not transfer_lookup_key:
                        raise FakeStripeError(
                            f"A price (`{other['id']}`) already uses that lookup key.", param="lookup_key"
                        )
                    other["lookup_key"] = None
        price: StripeObj = {
            "id": new_id("price_"),
            "object": "price",
            "active": active,
            "billing_scheme": "per_unit",
            "created": self._now(),
            "currency": currency.lower(),
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": lookup_key,
            "metadata": dict(metadata or {}),
            "nickname": nickname,
            "product": product_id,
            "recurring": (
                {
                    "interval": interval,
                    "interval_count": interval_count,
                    "meter": None,
                    "trial_period_days": None,
                    "usage_type": "licensed",
                }
                if interval is not None
                else None
            ),
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring" if interval is not None else "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount),
        }
        self._store(price)
        if emit:
            self._emit("price.created", price)
        return price

    def _price_from_params(self, params: Params, prefix: str, *, emit: bool, active: bool = True) -> StripeObj:
        """A price from ``price`` create params or from a ``price_data`` hash."""

        def p(name: str) -> str:
            return f"{prefix}[{name}]" if prefix else name

        currency = _req_str(params, "currency", p("currency"))
        unit_amount = _opt_int(params, "unit_amount", p("unit_amount"))
        if unit_amount is None:
            decimal = _opt_str(params, "unit_amount_decimal", p("unit_amount_decimal"))
            if decimal is None:
                raise _missing_param(p("unit_amount"))
            try:
                unit_amount = round(float(decimal))
            except ValueError:
                raise FakeStripeError(f"Invalid decimal: {decimal}", param=p("unit_amount_decimal")) from None
        product_id = _opt_str(params, "product", p("product"))
        if product_id is not None:
            self._get("product", product_id, param=p("product"), status=400)
        else:
            product_data = _sub_params(params, "product_data", p("product_data"))
            if not product_data:
                raise _missing_param(p("product"))
            product = self._new_product(
                name=_req_str(product_data, "name", p("product_data][name")),
                description=_opt_str(product_data, "description"),
                metadata=_apply_metadata({}, product_data.get("metadata")),
                emit=emit,
            )
            product_id = product["id"]
        recurring = _sub_params(params, "recurring", p("recurring"))
        interval = _req_str(recurring, "interval", p("recurring][interval")) if recurring else None
        interval_count = _opt_int(recurring, "interval_count", p("recurring][interval_count")) or 1
        return self._new_price(
            product_id=product_id,
            unit_amount=unit_amount,
            currency=currency,
            interval=interval,
            interval_count=interval_count,
            lookup_key=_opt_str(params, "lookup_key"),
            transfer_lookup_key=_as_bool(params["transfer_lookup_key"], "transfer_lookup_key")
            if "transfer_lookup_key" in params
            else False,
            nickname=_opt_str(params, "nickname"),
            metadata=_apply_metadata({}, params.get("metadata")),
            active=active,
            emit=emit,
        )

    @_mutation
    def create_price(self, params: Params) -> StripeObj:
        active = _as_bool(params["active"], "active") if "active" in params else True
        return copy.deepcopy(self._price_from_params(params, "", emit=True, active=active))

    @_mutation
    def update_price(self, price_id: str, params: Params) -> StripeObj:
        price = self._get("price", price_id)
        before = copy.deepcopy(price)
        if "active" in params:
            price["active"] = _as_bool(params["active"], "active")
        if "nickname" in params:
            price["nickname"] = _opt_str(params, "nickname")
        if "lookup_key" in params:
            lookup_key = _opt_str(params, "lookup_key")
            transfer = "transfer_lookup_key" in params and _as_bool(
                params["transfer_lookup_key"], "transfer_lookup_key"
            )
            for other in self._all("price"):
                if lookup_key is not None and other is not price and other["lookup_key"] == lookup_key:
                    if not transfer:
                        raise FakeStripeError(
                            f"A price (`{other['id']}`) already uses that lookup key.", param="lookup_key"
                        )
                    other["lookup_key"] = None
            price["lookup_key"] = lookup_key
        if "metadata" in params:
            price["metadata"] = _apply_metadata(price["metadata"], params["metadata"])
        self._emit_updated("price.updated", price, before)
        return copy.deepcopy(price)

    @_locked
    def list_prices(self, params: Params) -> StripeObj:
        prices = self._all("price")
        if "active" in params:
            active = _as_bool(params["active"], "active")
            prices = [p for p in prices if p["active"] == active]
        prices = self._filter_eq(
            prices,
            params,
            {"currency": lambda p: p["currency"], "product": lambda p: p["product"], "type": lambda p: p["type"]},
        )
        lookup_keys = [str(k) for k in _list_param(params, "lookup_keys")]
        if lookup_keys:
            prices = [p for p in prices if p["lookup_key"] in lookup_keys]
        recurring = _sub_params(params, "recurring")
        interval = _opt_str(recurring, "interval", "recurring[interval]")
        if interval is not None:
            prices = [p for p in prices if p["recurring"] and p["recurring"]["interval"] == interval]
        return self._paginate(prices, params, "/v1/prices")

    @_mutation
    def seed_price(
        self,
        lookup: str,
        unit_amount: int,
        interval: str | None = "month",
        *,
        currency: str = "usd",
        product_name: str | None = None,
        emit_events: bool = False,
    ) -> str:
        """Create a product and a price with ``lookup_key=lookup``; return the price id.

        ``interval=None`` makes a one-time price.  Seeding is fixture setup, so it
        emits no events unless ``emit_events`` is true.  Re-seeding the same lookup
        key moves the key to the new price (``transfer_lookup_key``).
        """
        product = self._new_product(name=product_name or lookup.replace("_", " ").title(), emit=emit_events)
        price = self._new_price(
            product_id=product["id"],
            unit_amount=unit_amount,
            currency=currency,
            interval=interval,
            lookup_key=lookup,
            transfer_lookup_key=True,
            emit=emit_events,
        )
        product["default_price"] = price["id"]
        price_id: str = price["id"]
        return price_id

    def _product_name(self, price: Mapping[str, Any]) -> str:
        product = self.objects.get(price.get("product", ""))
        name: str = product["name"] if product and product.get("name") else "Product"
        return name

    @staticmethod
    def _interval_seconds(price: Mapping[str, Any]) -> int:
        recurring = price.get("recurring")
        if not recurring:
            return PERIOD_SECONDS["month"]
        seconds: int = PERIOD_SECONDS[recurring["interval"]] * int(recurring.get("interval_count") or 1)
        return seconds

    # ------------------------------------------------------------------
    # payments (payment intents and charges)
    # ------------------------------------------------------------------

    def _collect_payment(
        self,
        amount: int,
        currency: str,
        customer: str | None,
        *,
        description: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> tuple[StripeObj, StripeObj]:
        now = self._now()
        pi_id, ch_id, pm_id = new_id("pi_"), new_id("ch_"), new_id("pm_")
        intent: StripeObj = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic_async",
            "client_secret": f"{pi_id}_secret_{new_id('', 25)}",
            "confirmation_method": "automatic",
            "created": now,
            "currency": currency,
            "customer": customer,
            "description": description,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": dict(metadata or {}),
            "payment_method": None,
            "payment_method_types": ["card"],
            "receipt_email": None,
            "status": "requires_payment_method",
        }
        self._store(intent)
        self._emit("payment_intent.created", intent)
        charge: StripeObj = {
            "id": ch_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": 0,
            "application_fee_amount": None,
            "balance_transaction": new_id("txn_"),
            "billing_details": {"address": None, "email": None, "name": None, "phone": None},
            "captured": True,
            "created": now,
            "currency": currency,
            "customer": customer,
            "description": description,
            "disputed": False,
            "failure_code": None,
            "failure_message": None,
            "livemode": False,
            "metadata": dict(metadata or {}),
            "outcome": {
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "normal",
                "seller_message": "Payment complete.",
                "type": "authorized",
            },
            "paid": True,
            "payment_intent": pi_id,
            "payment_method": pm_id,
            "payment_method_details": {
                "card": {
                    "brand": "visa",
                    "country": "US",
                    "exp_month": 12,
                    "exp_year": 2034,
                    "funding": "credit",
                    "last4": "4242",
                },
                "type": "card",
            },
            "receipt_email": None,
            "receipt_url": f"{self.base_url}/receipts/{ch_id}",
            "refunded": False,
            "status": "succeeded",
        }
        self._store(charge)
        self._emit("charge.succeeded", charge)
        intent.update(amount_received=amount, latest_charge=ch_id, payment_method=pm_id, status="succeeded")
        self._emit("payment_intent.succeeded", intent)
        return intent, charge

    # ------------------------------------------------------------------
    # invoices
    # ------------------------------------------------------------------

    def _line(
        self,
        *,
        amount: int,
        price: Mapping[str, Any],
        quantity: int,
        description: str,
        period_start: int,
        period_end: int,
        subscription_id: str | None,
        item_id: str | None,
        proration: bool,
    ) -> StripeObj:
        if subscription_id is not None:
            parent: StripeObj = {
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": None,
                    "proration": proration,
                    "proration_details": {"credited_items": None},
                    "subscription": subscription_id,
                    "subscription_item": item_id,
                },
                "type": "subscription_item_details",
            }
        else:
            parent = {
                "invoice_item_details": {
                    "invoice_item": new_id("ii_"),
                    "proration": proration,
                    "proration_details": {"credited_items": None},
                    "subscription": None,
                },
                "subscription_item_details": None,
                "type": "invoice_item_details",
            }
        return {
            "id": new_id("il_"),
            "object": "line_item",
            "amount": amount,
            "currency": price["currency"],
            "description": description,
            "discount_amounts": [],
            "discountable": not proration,
            "discounts": [],
            "invoice": None,
            "livemode": False,
            "metadata": {},
            "parent": parent,
            "period": {"end": period_end, "start": period_start},
            "pretax_credit_amounts": [],
            "pricing": {
                "price_details": {"price": price["id"], "product": price["product"]},
                "type": "price_details",
                "unit_amount_decimal": str(price["unit_amount"]),
            },
            "quantity": quantity,
            "taxes": [],
        }

    def _item_line(
        self, sub: StripeObj, item: StripeObj, period_start: int, period_end: int, *, trial: bool
    ) -> StripeObj:
        price, quantity = item["price"], item["quantity"]
        interval = price["recurring"]["interval"] if price.get("recurring") else "month"
        if trial:
            description = f"Trial period for {self._product_name(price)}"
        else:
            description = (
                f"{quantity} × {self._product_name(price)} (at {_money(price['unit_amount'], price['currency'])}"
                f" / {interval})"
            )
        return self._line(
            amount=0 if trial else price["unit_amount"] * quantity,
            price=price,
            quantity=quantity,
            description=description,
            period_start=period_start,
            period_end=period_end,
            subscription_id=sub["id"],
            item_id=item["id"],
            proration=False,
        )

    def _draft_invoice(
        self,
        customer_id: str,
        currency: str,
        lines: list[StripeObj],
        *,
        billing_reason: str,
        subscription: StripeObj | None,
        period_start: int,
        period_end: int,
    ) -> StripeObj:
        """A draft invoice, stored but not announced (``_issue_invoice`` emits the events)."""
        now = self._now()
        inv_id = new_id("in_")
        customer = self.objects[customer_id]
        for line in lines:
            line["invoice"] = inv_id
        subtotal = sum(int(line["amount"]) for line in lines)
        invoice: StripeObj = {
            "id": inv_id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "Fake Stripe",
            "amount_due": max(subtotal, 0),
            "amount_overpaid": 0,
            "amount_paid": 0,
            "amount_remaining": max(subtotal, 0),
            "amount_shipping": 0,
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": True,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "status": None},
            "billing_reason": billing_reason,
            "collection_method": "charge_automatically",
            "created": now,
            "currency": currency,
            "customer": customer_id,
            "customer_email": customer.get("email"),
            "customer_name": customer.get("name"),
            "description": None,
            "discounts": [],
            "due_date": None,
            "ending_balance": None,
            "hosted_invoice_url": f"{self.base_url}/invoices/{inv_id}",
            "invoice_pdf": f"{self.base_url}/invoices/{inv_id}/pdf",
            "last_finalization_error": None,
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": False,
                "total_count": len(lines),
                "url": f"/v1/invoices/{inv_id}/lines",
            },
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": None,
            "number": None,
            "parent": (
                {
                    "quote_details": None,
                    "subscription_details": {
                        "metadata": copy.deepcopy(subscription["metadata"]),
                        "subscription": subscription["id"],
                    },
                    "type": "subscription_details",
                }
                if subscription is not None
                else None
            ),
            "period_end": period_end,
            "period_start": period_start,
            "starting_balance": 0,
            "status": "draft",
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "subtotal": subtotal,
            "total": subtotal,
            "total_discount_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": None,
        }
        return self._store(invoice)

    def _issue_invoice(self, invoice: StripeObj, *, pay: bool) -> None:
        """invoice.created → finalize (applies the customer balance) → pay or fail."""
        self._emit("invoice.created", invoice)
        now = self._now()
        customer = self.objects[invoice["customer"]]
        starting_balance: int = customer.get("balance", 0)
        applied = invoice["total"] + starting_balance
        customer["balance"] = min(applied, 0)
        sequence: int = customer.get("next_invoice_sequence", 1)
        customer["next_invoice_sequence"] = sequence + 1
        invoice.update(
            status="open",
            number=f"{customer.get('invoice_prefix', 'FAKE')}-{sequence:04d}",
            starting_balance=starting_balance,
            ending_balance=min(applied, 0),
            amount_due=max(applied, 0),
            amount_remaining=max(applied, 0),
        )
        invoice["status_transitions"]["finalized_at"] = now
        self._emit("invoice.finalized", invoice)
        if pay:
            self._pay_invoice(invoice)
        else:
            self._fail_invoice(invoice)

    def _pay_invoice(self, invoice: StripeObj) -> None:
        now = self._now()
        amount: int = invoice["amount_remaining"]
        if amount > 0:
            intent, _charge = self._collect_payment(
                amount,
                invoice["currency"],
                invoice["customer"],
                description=(
                    "Subscription creation"
                    if invoice["billing_reason"] == "subscription_create"
                    else "Subscription update"
                ),
            )
            payment: StripeObj = {
                "id": new_id("inpay_"),
                "object": "invoice_payment",
                "amount_paid": amount,
                "amount_requested": amount,
                "created": now,
                "currency": invoice["currency"],
                "invoice": invoice["id"],
                "is_default": True,
                "livemode": False,
                "payment": {"payment_intent": intent["id"], "type": "payment_intent"},
                "status": "paid",
                "status_transitions": {"canceled_at": None, "paid_at": now},
            }
            self._store(payment)
        invoice.update(
            amount_paid=invoice["amount_paid"] + amount,
            amount_remaining=0,
            attempted=True,
            attempt_count=invoice["attempt_count"] + (1 if amount > 0 else 0),
            next_payment_attempt=None,
            status="paid",
        )
        invoice["status_transitions"]["paid_at"] = now
        self._emit("invoice.paid", invoice)
        self._emit("invoice.payment_succeeded", invoice)

    def _fail_invoice(self, invoice: StripeObj) -> None:
        invoice.update(
            attempted=True,
            attempt_count=invoice["attempt_count"] + 1,
            next_payment_attempt=self._now() + 3 * DAY,
        )
        self._emit("invoice.payment_failed", invoice)

    @_locked
    def list_invoices(self, params: Params) -> StripeObj:
        invoices = self._filter_eq(
            self._all("invoice"),
            params,
            {
                "customer": lambda i: i["customer"],
                "status": lambda i: i["status"],
                "subscription": lambda i: (i["parent"] or {}).get("subscription_details", {}).get("subscription"),
            },
        )
        return self._paginate(invoices, params, "/v1/invoices")

    @_locked
    def list_invoice_lines(self, invoice_id: str, params: Params) -> StripeObj:
        invoice = self._get("invoice", invoice_id)
        return self._paginate(list(invoice["lines"]["data"]), params, f"/v1/invoices/{invoice_id}/lines")

    @_locked
    def list_invoice_payments(self, params: Params) -> StripeObj:
        payments = self._filter_eq(self._all("invoice_payment"), params, {"invoice": lambda p: p["invoice"]})
        return self._paginate(payments, params, "/v1/invoice_payments")

    @_mutation
    def fail_subscription_invoice(self, params: Params) -> StripeObj:
        """Control: the subscription's next invoice fails → ``invoice.payment_failed``, ``past_due``."""
        mark = len(self.events)
        sub = self._get("subscription", _req_str(params, "subscription"), param="subscription", status=400)
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise FakeStripeError(f"Subscription {sub['id']} is {sub['status']}.", param="subscription")
        before = copy.deepcopy(sub)
        start, end = sub["current_period_start"], sub["current_period_end"]
        lines = [self._item_line(sub, item, start, end, trial=False) for item in sub["items"]["data"]]
        invoice = self._draft_invoice(
            sub["customer"],
            sub["currency"],
            lines,
            billing_reason="subscription_cycle",
            subscription=sub,
            period_start=start,
            period_end=end,
        )
        self._issue_invoice(invoice, pay=False)
        sub["latest_invoice"] = invoice["id"]
        sub["status"] = "past_due"
        self._emit_updated("customer.subscription.updated", sub, before)
        return {"object": copy.deepcopy(invoice), "events": self._events_since(mark)}

    @_mutation
    def pay_open_invoice(self, invoice_id: str) -> StripeObj:
        """Control: pay an open invoice (e.g. after ``fail``); a past-due subscription becomes active."""
        mark = len(self.events)
        invoice = self._get("invoice", invoice_id)
        if invoice["status"] != "open":
            raise FakeStripeError(f"Invoice is already {invoice['status']}; only open invoices can be paid.")
        self._pay_invoice(invoice)
        sub_id = ((invoice.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        sub = self.objects.get(sub_id) if sub_id else None
        if sub is not None and sub["status"] in ("past_due", "unpaid") and sub["latest_invoice"] == invoice_id:
            before = copy.deepcopy(sub)
            sub["status"] = "active"
            self._emit_updated("customer.subscription.updated", sub, before)
        return {"object": copy.deepcopy(invoice), "events": self._events_since(mark)}

    # ------------------------------------------------------------------
    # subscriptions
    # ------------------------------------------------------------------

    def _new_item(self, sub_id: str, price: StripeObj, quantity: int, start: int, end: int) -> StripeObj:
        return {
            "id": new_id("si_", 14),
            "object": "subscription_item",
            "created": self._now(),
            "current_period_end": end,
            "current_period_start": start,
            "discounts": [],
            "metadata": {},
            "price": copy.deepcopy(price),
            "quantity": quantity,
            "subscription": sub_id,
            "tax_rates": [],
        }

    @staticmethod
    def _set_period(sub: StripeObj, start: int, end: int) -> None:
        sub["current_period_start"] = start
        sub["current_period_end"] = end
        for item in sub["items"]["data"]:
            item["current_period_start"] = start
            item["current_period_end"] = end

    def _recurring_price(self, price_id: str, param: str, currency: str | None = None) -> StripeObj:
        price = self._price(price_id, param)
        if not price.get("recurring"):
            raise FakeStripeError(
                f"The price specified is set to `type=one_time` but this field only accepts prices with "
                f"`type=recurring`: {price_id}",
                param=param,
            )
        if not price["active"]:
            raise FakeStripeError(f"The price specified is inactive: {price_id}", param=param)
        if currency is not None and price["currency"] != currency:
            raise FakeStripeError(
                "Currency and interval fields must match across all prices on this subscription.", param=param
            )
        return price

    def _start_subscription(
        self,
        customer_id: str,
        items: list[tuple[StripeObj, int]],
        *,
        metadata: Mapping[str, str],
        trial_days: int | None = None,
        one_time: list[tuple[StripeObj, int]] | None = None,
        description: str | None = None,
        schedule_id: str | None = None,
        sub_id: str | None = None,
    ) -> tuple[StripeObj, StripeObj]:
        """Create an active (or trialing) subscription and pay its first invoice."""
        now = self._now()
        sub_id = sub_id or new_id("sub_")
        currency: str = items[0][0]["currency"]
        trial_end = now + trial_days * DAY if trial_days else None
        period_end = trial_end or now + self._interval_seconds(items[0][0])
        sub_items = [self._new_item(sub_id, price, qty, now, period_end) for price, qty in items]
        sub: StripeObj = {
            "id": sub_id,
            "object": "subscription",
            "application": None,
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": period_end if trial_end else now,
            "billing_cycle_anchor_config": None,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically",
            "created": now,
            "currency": currency,
            "current_period_end": period_end,
            "current_period_start": now,
            "customer": customer_id,
            "days_until_due": None,
            "default_payment_method": None,
            "default_source": None,
            "description": description,
            "discounts": [],
            "ended_at": None,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "items": {
                "object": "list",
                "data": sub_items,
                "has_more": False,
                "total_count": len(sub_items),
                "url": f"/v1/subscription_items?subscription={sub_id}",
            },
            "latest_invoice": None,
            "livemode": False,
            "metadata": dict(metadata),
            "next_pending_invoice_item_invoice": None,
            "pause_collection": None,
            "pending_invoice_item_interval": None,
            "pending_setup_intent": None,
            "pending_update": None,
            "schedule": schedule_id,
            "start_date": now,
            "status": "trialing" if trial_end else "active",
            "test_clock": None,
            "trial_end": trial_end,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": now if trial_end else None,
        }
        self._store(sub)
        lines = [self._item_line(sub, item, now, period_end, trial=trial_end is not None) for item in sub_items]
        for price, qty in one_time or []:
            lines.append(
                self._line(
                    amount=price["unit_amount"] * qty,
                    price=price,
                    quantity=qty,
                    description=self._product_name(price),
                    period_start=now,
                    period_end=now,
                    subscription_id=None,
                    item_id=None,
                    proration=False,
                )
            )
        invoice = self._draft_invoice(
            customer_id,
            currency,
            lines,
            billing_reason="subscription_create",
            subscription=sub,
            period_start=now,
            period_end=now,
        )
        sub["latest_invoice"] = invoice["id"]
        self._emit("customer.subscription.created", sub)
        self._issue_invoice(invoice, pay=True)
        return sub, invoice

    def _items_from_params(self, params: Params, key: str) -> list[tuple[StripeObj, int]]:
        raw = _list_param(params, key)
        if not raw:
            raise _missing_param(key)
        items: list[tuple[StripeObj, int]] = []
        currency: str | None = None
        for i, entry in enumerate(raw):
            if not isinstance(entry, Mapping):
                raise FakeStripeError(f"Invalid object: {key}[{i}]", param=f"{key}[{i}]")
            price = self._recurring_price(
                _req_str(entry, "price", f"{key}[{i}][price]"), f"{key}[{i}][price]", currency
            )
            currency = price["currency"]
            quantity = _opt_int(entry, "quantity", f"{key}[{i}][quantity]")
            items.append((price, 1 if quantity is None else quantity))
        return items

    @_mutation
    def create_subscription(self, params: Params) -> StripeObj:
        customer = self._customer(_req_str(params, "customer"))
        items = self._items_from_params(params, "items")
        trial_days = _opt_int(params, "trial_period_days")
        sub, _invoice = self._start_subscription(
            customer["id"],
            items,
            metadata=_apply_metadata({}, params.get("metadata")),
            trial_days=trial_days,
            description=_opt_str(params, "description"),
        )
        if "cancel_at_period_end" in params and _as_bool(params["cancel_at_period_end"], "cancel_at_period_end"):
            before = copy.deepcopy(sub)
            self._set_cancel_at_period_end(sub, True)
            self._emit_updated("customer.subscription.updated", sub, before)
        return copy.deepcopy(sub)

    @_locked
    def list_subscriptions(self, params: Params) -> StripeObj:
        subs = self._all("subscription")
        status = _opt_str(params, "status")
        if status is None:
            subs = [s for s in subs if s["status"] not in ("canceled", "incomplete_expired")]
        elif status == "ended":
            subs = [s for s in subs if s["status"] in ("canceled", "incomplete_expired")]
        elif status != "all":
            subs = [s for s in subs if s["status"] == status]
        subs = self._filter_eq(subs, params, {"customer": lambda s: s["customer"]})
        price_id = _opt_str(params, "price")
        if price_id is not None:
            subs = [s for s in subs if any(i["price"]["id"] == price_id for i in s["items"]["data"])]
        return self._paginate(subs, params, "/v1/subscriptions")

    def _find_item(self, item_id: str, param: str = "id", status: int = 404) -> tuple[StripeObj, StripeObj]:
        for sub in self._all("subscription"):
            for item in sub["items"]["data"]:
                if item["id"] == item_id:
                    return sub, item
        raise FakeStripeError(
            f"No such subscription_item: '{item_id}'", status=status, code="resource_missing", param=param
        )

    @_locked
    def retrieve_subscription_item(self, item_id: str) -> StripeObj:
        return copy.deepcopy(self._find_item(item_id)[1])

    @_locked
    def list_subscription_items(self, params: Params) -> StripeObj:
        sub = self._get("subscription", _req_str(params, "subscription"), param="subscription", status=400)
        return self._paginate(
            list(reversed(sub["items"]["data"])), params, f"/v1/subscription_items?subscription={sub['id']}"
        )

    def _set_cancel_at_period_end(self, sub: StripeObj, flag: bool) -> None:
        sub["cancel_at_period_end"] = flag
        sub["cancel_at"] = sub["current_period_end"] if flag else None
        sub["canceled_at"] = self._now() if flag else None
        sub["cancellation_details"]["reason"] = "cancellation_requested" if flag else None

    def _set_cancel_at(self, sub: StripeObj, raw: Any) -> None:
        if sub["schedule"]:
            raise FakeStripeError(
                f"The subscription is managed by the subscription schedule `{sub['schedule']}`, and updating any "
                "cancelation behavior directly is not allowed. Please update the schedule instead.",
                param="cancel_at",
            )
        if raw is None or raw == "":
            sub["cancel_at"] = None
            if not sub["cancel_at_period_end"]:
                sub["canceled_at"] = None
                sub["cancellation_details"]["reason"] = None
            return
        if raw in ("max_period_end", "min_period_end"):
            cancel_at: int = sub["current_period_end"]
        else:
            cancel_at = _as_int(raw, "cancel_at")
            if cancel_at <= self._now():
                raise FakeStripeError("cancel_at must be in the future.", param="cancel_at")
        sub["cancel_at"] = cancel_at
        sub["canceled_at"] = self._now()
        sub["cancellation_details"]["reason"] = "cancellation_requested"

    def _proration_lines(self, sub: StripeObj, changes: list[_ItemChange], now: int) -> list[StripeObj]:
        start, end = sub["current_period_start"], sub["current_period_end"]
        fraction = min(max((end - now) / max(end - start, 1), 0.0), 1.0)
        lines: list[StripeObj] = []
        for change in changes:
            if change.old_price is not None and change.old_quantity > 0:
                old = change.old_price
                lines.append(
                    self._line(
                        amount=-round(old["unit_amount"] * change.old_quantity * fraction),
                        price=old,
                        quantity=change.old_quantity,
                        description=(
                            f"Unused time on {change.old_quantity} × {self._product_name(old)} after {_day(now)}"
                        ),
                        period_start=now,
                        period_end=end,
                        subscription_id=sub["id"],
                        item_id=change.item_id,
                        proration=True,
                    )
                )
            if change.new_price is not None and change.new_quantity > 0:
                new = change.new_price
                lines.append(
                    self._line(
                        amount=round(new["unit_amount"] * change.new_quantity * fraction),
                        price=new,
                        quantity=change.new_quantity,
                        description=(
                            f"Remaining time on {change.new_quantity} × {self._product_name(new)} after {_day(now)}"
                        ),
                        period_start=now,
                        period_end=end,
                        subscription_id=sub["id"],
                        item_id=change.item_id,
                        proration=True,
                    )
                )
        return lines

    def _reconcile_items(self, sub: StripeObj, desired: list[tuple[StripeObj, int]]) -> list[_ItemChange]:
        """Make the subscription's items equal ``desired`` (positionally, keeping item ids)."""
        items: list[StripeObj] = sub["items"]["data"]
        start, end = sub["current_period_start"], sub["current_period_end"]
        changes: list[_ItemChange] = []
        new_items: list[StripeObj] = []
        for index in range(max(len(items), len(desired))):
            current = items[index] if index < len(items) else None
            wanted = desired[index] if index < len(desired) else None
            if current is not None and wanted is not None:
                price, qty = wanted
                if current["price"]["id"] != price["id"] or current["quantity"] != qty:
                    changes.append(_ItemChange(current["id"], current["price"], current["quantity"], price, qty))
                    current["price"], current["quantity"] = copy.deepcopy(price), qty
                new_items.append(current)
            elif current is not None:
                changes.append(_ItemChange(current["id"], current["price"], current["quantity"], None, 0))
            elif wanted is not None:
                item = self._new_item(sub["id"], wanted[0], wanted[1], start, end)
                changes.append(_ItemChange(item["id"], None, 0, wanted[0], wanted[1]))
                new_items.append(item)
        sub["items"]["data"] = new_items
        sub["items"]["total_count"] = len(new_items)
        return changes

    def _handle_prorations(
        self, sub: StripeObj, changes: list[_ItemChange], behavior: str, now: int
    ) -> StripeObj | None:
        """Returns a draft ``always_invoice`` invoice (already set as ``latest_invoice``), if any."""
        if not changes or behavior == "none":
            return None
        lines = self._proration_lines(sub, changes, now)
        if behavior == "create_prorations":
            self._pending_prorations.setdefault(sub["id"], []).extend(lines)
            return None
        lines = self._pending_prorations.pop(sub["id"], []) + lines
        invoice = self._draft_invoice(
            sub["customer"],
            sub["currency"],
            lines,
            billing_reason="subscription_update",
            subscription=sub,
            period_start=now,
            period_end=now,
        )
        sub["latest_invoice"] = invoice["id"]
        return invoice

    @_mutation
    def update_subscription(self, sub_id: str, params: Params) -> StripeObj:
        sub = self._get("subscription", sub_id)
        now = self._now()
        if sub["status"] in ("canceled", "incomplete_expired") and (
            set(params) - {"metadata", "cancellation_details", "expand"}
        ):
            raise FakeStripeError("A canceled subscription can only update its cancellation_details and metadata.")
        before = copy.deepcopy(sub)
        behavior = _choice(params, "proration_behavior", PRORATION_BEHAVIORS, "create_prorations")

        if "cancel_at_period_end" in params:
            if sub["schedule"]:
                raise FakeStripeError(
                    f"The subscription is managed by the subscription schedule `{sub['schedule']}`, and updating any "
                    "cancelation behavior directly is not allowed. Please update the schedule instead.",
                    param="cancel_at_period_end",
                )
            self._set_cancel_at_period_end(sub, _as_bool(params["cancel_at_period_end"], "cancel_at_period_end"))
        if "cancel_at" in params:
            self._set_cancel_at(sub, params["cancel_at"])
        if "metadata" in params:
            sub["metadata"] = _apply_metadata(sub["metadata"], params["metadata"])
        for key in ("description", "default_payment_method"):
            if key in params:
                sub[key] = _opt_str(params, key)
        details = _sub_params(params, "cancellation_details")
        for key in ("comment", "feedback"):
            if key in details:
                sub["cancellation_details"][key] = _opt_str(details, key, f"cancellation_details[{key}]")

        changes = self._apply_item_params(sub, _list_param(params, "items"))
        prorate_from = _opt_int(params, "proration_date") or now
        anchor = _opt_str(params, "billing_cycle_anchor")
        if anchor not in (None, "now", "unchanged"):
            raise FakeStripeError(
                "Invalid billing_cycle_anchor: must be `now` or `unchanged`", param="billing_cycle_anchor"
            )

        invoice: StripeObj | None = None
        if anchor == "now":
            lines = self._pending_prorations.pop(sub["id"], [])
            if behavior != "none":
                lines += self._proration_lines(sub, changes, prorate_from)
            end = now + self._interval_seconds(sub["items"]["data"][0]["price"])
            self._set_period(sub, now, end)
            sub["billing_cycle_anchor"] = now
            if sub["status"] == "trialing":
                sub["status"], sub["trial_end"] = "active", now
            lines += [self._item_line(sub, item, now, end, trial=False) for item in sub["items"]["data"]]
            invoice = self._draft_invoice(
                sub["customer"],
                sub["currency"],
                lines,
                billing_reason="subscription_update",
                subscription=sub,
                period_start=now,
                period_end=now,
            )
            sub["latest_invoice"] = invoice["id"]
        else:
            invoice = self._handle_prorations(sub, changes, behavior, prorate_from)
        self._emit_updated("customer.subscription.updated", sub, before)
        if invoice is not None:
            self._issue_invoice(invoice, pay=True)
        return copy.deepcopy(sub)

    def _apply_item_params(self, sub: StripeObj, raw_items: list[Any]) -> list[_ItemChange]:
        changes: list[_ItemChange] = []
        items: list[StripeObj] = sub["items"]["data"]
        start, end = sub["current_period_start"], sub["current_period_end"]
        for i, entry in enumerate(raw_items):
            p = f"items[{i}]"
            if not isinstance(entry, Mapping):
                raise FakeStripeError(f"Invalid object: {p}", param=p)
            item_id = _opt_str(entry, "id", f"{p}[id]")
            price_id = _opt_str(entry, "price", f"{p}[price]")
            quantity = _opt_int(entry, "quantity", f"{p}[quantity]")
            deleted = "deleted" in entry and _as_bool(entry["deleted"], f"{p}[deleted]")
            if item_id is not None:
                item = next((it for it in items if it["id"] == item_id), None)
                if item is None:
                    raise FakeStripeError(
                        f"No such subscription_item: '{item_id}'", code="resource_missing", param=f"{p}[id]"
                    )
                if deleted:
                    items.remove(item)
                    changes.append(_ItemChange(item["id"], item["price"], item["quantity"], None, 0))
                    continue
                old_price, old_qty = item["price"], item["quantity"]
                if price_id is not None:
                    item["price"] = copy.deepcopy(self._recurring_price(price_id, f"{p}[price]", sub["currency"]))
                if quantity is not None:
                    item["quantity"] = quantity
                if "metadata" in entry:
                    item["metadata"] = _apply_metadata(item["metadata"], entry["metadata"], f"{p}[metadata]")
                if item["price"]["id"] != old_price["id"] or item["quantity"] != old_qty:
                    changes.append(_ItemChange(item["id"], old_price, old_qty, item["price"], item["quantity"]))
            else:
                if price_id is None:
                    raise _missing_param(f"{p}[price]")
                price = self._recurring_price(price_id, f"{p}[price]", sub["currency"])
                if any(it["price"]["id"] == price_id for it in items):
                    raise FakeStripeError(
                        "Cannot add multiple subscription items with the same price.", param=f"{p}[price]"
                    )
                item = self._new_item(sub["id"], price, 1 if quantity is None else quantity, start, end)
                items.append(item)
                changes.append(_ItemChange(item["id"], None, 0, item["price"], item["quantity"]))
        if raw_items and not items:
            raise FakeStripeError("A subscription must have at least one active item.", param="items")
        sub["items"]["total_count"] = len(items)
        return changes

    def _end_subscription(self, sub: StripeObj, *, at: int, reason: str) -> None:
        """Cancel now: status canceled, emit ``customer.subscription.deleted``."""
        sub["status"] = "canceled"
        sub["ended_at"] = at
        sub["canceled_at"] = sub["canceled_at"] or at
        sub["cancellation_details"]["reason"] = sub["cancellation_details"]["reason"] or reason
        self._pending_prorations.pop(sub["id"], None)
        self._emit("customer.subscription.deleted", sub)

    @_mutation
    def cancel_subscription(self, sub_id: str, params: Params) -> StripeObj:
        sub = self._get("subscription", sub_id)
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise FakeStripeError(
                f"This subscription is already canceled: '{sub_id}'.", code="resource_missing", param="id"
            )
        details = _sub_params(params, "cancellation_details")
        for key in ("comment", "feedback"):
            if key in details:
                sub["cancellation_details"][key] = _opt_str(details, key, f"cancellation_details[{key}]")
        now = self._now()
        schedule = self.objects.get(sub["schedule"]) if sub["schedule"] else None
        if schedule is not None and schedule["status"] in ("active", "not_started"):
            schedule.update(status="canceled", canceled_at=now, current_phase=None)
            self._emit("subscription_schedule.canceled", schedule)
        sub["canceled_at"] = now
        self._end_subscription(sub, at=now, reason="cancellation_requested")
        return copy.deepcopy(sub)

    @_mutation
    def advance_subscription(self, sub_id: str) -> StripeObj:
        """Control: jump to the end of the current period and do what Stripe would do there."""
        mark = len(self.events)
        sub = self._get("subscription", sub_id)
        if sub["status"] not in ("active", "trialing", "past_due", "unpaid"):
            raise FakeStripeError(f"Cannot advance a subscription whose status is `{sub['status']}`.")
        boundary: int = sub["current_period_end"]
        before = copy.deepcopy(sub)

        cancel_at: int | None = sub["cancel_at"]
        if (sub["cancel_at_period_end"] or (cancel_at is not None and cancel_at <= boundary)) and not sub["schedule"]:
            self._end_subscription(sub, at=min(cancel_at or boundary, boundary), reason="cancellation_requested")
            return {"object": copy.deepcopy(sub), "events": self._events_since(mark)}

        schedule = self.objects.get(sub["schedule"]) if sub["schedule"] else None
        if schedule is not None and schedule["status"] == "active":
            phase = next((ph for ph in schedule["phases"] if ph["end_date"] > boundary), None)
            if phase is None:
                if schedule["end_behavior"] == "cancel":
                    schedule.update(status="completed", completed_at=boundary, current_phase=None)
                    self._emit("subscription_schedule.completed", schedule)
                    self._end_subscription(sub, at=boundary, reason="cancellation_requested")
                    return {"object": copy.deepcopy(sub), "events": self._events_since(mark)}
                schedule.update(
                    status="released",
                    released_at=boundary,
                    released_subscription=sub["id"],
                    subscription=None,
                    current_phase=None,
                )
                sub["schedule"] = None
                self._emit("subscription_schedule.released", schedule)
            else:
                current = {"end_date": phase["end_date"], "start_date": phase["start_date"]}
                if schedule["current_phase"] != current:
                    schedule_before = copy.deepcopy(schedule)
                    schedule["current_phase"] = current
                    self._reconcile_items(sub, self._phase_items(phase))
                    if phase.get("metadata"):
                        sub["metadata"] = _apply_metadata(sub["metadata"], phase["metadata"])
                    self._emit_updated("subscription_schedule.updated", schedule, schedule_before)

        # renewal into the next period
        end = boundary + self._interval_seconds(sub["items"]["data"][0]["price"])
        self._set_period(sub, boundary, end)
        if sub["status"] in ("trialing", "past_due", "unpaid"):
            sub["status"] = "active"
        lines = self._pending_prorations.pop(sub["id"], [])
        lines += [self._item_line(sub, item, boundary, end, trial=False) for item in sub["items"]["data"]]
        invoice = self._draft_invoice(
            sub["customer"],
            sub["currency"],
            lines,
            billing_reason="subscription_cycle",
            subscription=sub,
            period_start=before["current_period_start"],
            period_end=boundary,
        )
        sub["latest_invoice"] = invoice["id"]
        self._emit_updated("customer.subscription.updated", sub, before)
        self._issue_invoice(invoice, pay=True)
        return {"object": copy.deepcopy(sub), "events": self._events_since(mark)}

    # ------------------------------------------------------------------
    # subscription schedules
    # ------------------------------------------------------------------

    def _phase_items(self, phase: Mapping[str, Any]) -> list[tuple[StripeObj, int]]:
        return [(self.objects[item["price"]], int(item["quantity"])) for item in phase["items"]]

    def _build_phases(self, raw_phases: list[Any], *, first_start: int, now: int) -> list[StripeObj]:
        phases: list[StripeObj] = []
        previous_end: int | None = None
        currency: str | None = None
        for i, raw in enumerate(raw_phases):
            p = f"phases[{i}]"
            if not isinstance(raw, Mapping):
                raise FakeStripeError(f"Invalid object: {p}", param=p)
            raw_items = _list_param(raw, "items", f"{p}[items]")
            if not raw_items:
                raise _missing_param(f"{p}[items]")
            items: list[StripeObj] = []
            prices: list[StripeObj] = []
            for j, raw_item in enumerate(raw_items):
                q = f"{p}[items][{j}]"
                if not isinstance(raw_item, Mapping):
                    raise FakeStripeError(f"Invalid object: {q}", param=q)
                price_id = _opt_str(raw_item, "price", f"{q}[price]") or _opt_str(raw_item, "plan", f"{q}[plan]")
                if price_id is None:
                    raise _missing_param(f"{q}[price]")
                price = self._recurring_price(price_id, f"{q}[price]", currency)
                currency = price["currency"]
                prices.append(price)
                quantity = _opt_int(raw_item, "quantity", f"{q}[quantity]")
                items.append(
                    {
                        "discounts": [],
                        "metadata": _apply_metadata({}, raw_item.get("metadata"), f"{q}[metadata]"),
                        "price": price_id,
                        "quantity": 1 if quantity is None else quantity,
                        "tax_rates": [],
                    }
                )
            raw_start = raw.get("start_date")
            if i == 0:
                if raw_start is None or raw_start == "":
                    start = first_start
                elif raw_start == "now":
                    start = now
                else:
                    start = _as_int(raw_start, f"{p}[start_date]")
            else:
                assert previous_end is not None
                if raw_start is None or raw_start == "":
                    start = previous_end
                else:
                    start = now if raw_start == "now" else _as_int(raw_start, f"{p}[start_date]")
                    if start != previous_end:
                        raise FakeStripeError(
                            f"The start_date of phases[{i}] must be equal to the end_date of phases[{i - 1}].",
                            param=f"{p}[start_date]",
                        )
            if "iterations" in raw:
                raise FakeStripeError(
                    f"Received unknown parameter: {p}[iterations]. API version {self.api_version} replaced it with "
                    f"{p}[duration][interval] and {p}[duration][interval_count].",
                    param=f"{p}[iterations]",
                )
            raw_end = raw.get("end_date")
            end = now if raw_end == "now" else _opt_int(raw, "end_date", f"{p}[end_date]")
            duration = _sub_params(raw, "duration", f"{p}[duration]")
            if end is not None and duration:
                raise FakeStripeError(
                    f"You may only specify one of these parameters: {p}[end_date], {p}[duration].",
                    param=f"{p}[duration]",
                )
            if duration:
                unit = _req_str(duration, "interval", f"{p}[duration][interval]")
                if unit not in PERIOD_SECONDS:
                    raise FakeStripeError(
                        f"Invalid {p}[duration][interval]: must be one of day, week, month or year",
                        param=f"{p}[duration][interval]",
                    )
                count = _opt_int(duration, "interval_count", f"{p}[duration][interval_count]")
                end = start + max(count or 1, 1) * PERIOD_SECONDS[unit]
            if end is None:  # Stripe's default for a phase without an end: one billing period
                end = start + self._interval_seconds(prices[0])
            if end <= start:
                raise FakeStripeError(f"{p}[end_date] must be after {p}[start_date].", param=f"{p}[end_date]")
            phases.append(
                {
                    "add_invoice_items": [],
                    "application_fee_percent": None,
                    "billing_cycle_anchor": None,
                    "collection_method": None,
                    "currency": currency,
                    "default_payment_method": None,
                    "default_tax_rates": [],
                    "description": _opt_str(raw, "description", f"{p}[description]"),
                    "discounts": [],
                    "end_date": end,
                    "invoice_settings": None,
                    "items": items,
                    "metadata": _apply_metadata({}, raw.get("metadata"), f"{p}[metadata]"),
                    "on_behalf_of": None,
                    "proration_behavior": _choice(raw, "proration_behavior", PRORATION_BEHAVIORS, "create_prorations"),
                    "start_date": start,
                    "transfer_data": None,
                    "trial_end": None,
                }
            )
            previous_end = end
        return phases

    def _new_schedule(
        self,
        *,
        customer: str,
        phases: list[StripeObj],
        status: str,
        subscription: str | None,
        end_behavior: str,
        metadata: Mapping[str, str],
    ) -> StripeObj:
        schedule: StripeObj = {
            "id": new_id("sub_sched_"),
            "object": "subscription_schedule",
            "application": None,
            "billing_mode": {"type": "classic"},
            "canceled_at": None,
            "completed_at": None,
            "created": self._now(),
            "current_phase": (
                {"end_date": phases[0]["end_date"], "start_date": phases[0]["start_date"]}
                if status == "active"
                else None
            ),
            "customer": customer,
            "default_settings": {
                "application_fee_percent": None,
                "automatic_tax": {"enabled": False, "liability": None},
                "billing_cycle_anchor": "automatic",
                "collection_method": "charge_automatically",
                "default_payment_method": None,
                "default_source": None,
                "description": None,
                "invoice_settings": {"issuer": {"type": "self"}},
                "on_behalf_of": None,
                "transfer_data": None,
            },
            "end_behavior": end_behavior,
            "livemode": False,
            "metadata": dict(metadata),
            "phases": phases,
            "released_at": None,
            "released_subscription": None,
            "status": status,
            "subscription": subscription,
            "test_clock": None,
        }
        return self._store(schedule)

    @_mutation
    def create_subscription_schedule(self, params: Params) -> StripeObj:
        now = self._now()
        end_behavior = _choice(params, "end_behavior", ("release", "cancel"), "release")
        metadata = _apply_metadata({}, params.get("metadata"))
        from_subscription = _opt_str(params, "from_subscription")
        if from_subscription is not None:
            for forbidden in ("phases", "customer", "start_date"):
                if forbidden in params:
                    raise FakeStripeError(
                        f"You cannot set `{forbidden}` if `from_subscription` is set.", param=forbidden
                    )
            sub = self._get("subscription", from_subscription, param="from_subscription", status=400)
            if sub["schedule"]:
                raise FakeStripeError(
                    f"You cannot migrate a subscription that is already attached to a schedule: `{sub['schedule']}`.",
                    param="from_subscription",
                )
            if sub["status"] in ("canceled", "incomplete_expired"):
                raise FakeStripeError(
                    f"You cannot migrate a subscription with status `{sub['status']}`.", param="from_subscription"
                )
            phase = {
                "add_invoice_items": [],
                "application_fee_percent": None,
                "billing_cycle_anchor": None,
                "collection_method": None,
                "currency": sub["currency"],
                "default_payment_method": None,
                "default_tax_rates": [],
                "description": None,
                "discounts": [],
                "end_date": sub["current_period_end"],
                "invoice_settings": None,
                "items": [
                    {
                        "discounts": [],
                        "metadata": {},
                        "price": item["price"]["id"],
                        "quantity": item["quantity"],
                        "tax_rates": [],
                    }
                    for item in sub["items"]["data"]
                ],
                "metadata": {},
                "on_behalf_of": None,
                "proration_behavior": "create_prorations",
                "start_date": sub["current_period_start"],
                "transfer_data": None,
                "trial_end": None,
            }
            schedule = self._new_schedule(
                customer=sub["customer"],
                phases=[phase],
                status="active",
                subscription=sub["id"],
                end_behavior=end_behavior,
                metadata=metadata,
            )
            before = copy.deepcopy(sub)
            sub["schedule"] = schedule["id"]
            self._emit("subscription_schedule.created", schedule)
            self._emit_updated("customer.subscription.updated", sub, before)
            return copy.deepcopy(schedule)

        customer = self._customer(_req_str(params, "customer"))
        raw_start = params.get("start_date")
        start = now if raw_start in (None, "", "now") else _as_int(raw_start, "start_date")
        raw_phases = _list_param(params, "phases")
        if not raw_phases:
            raise _missing_param("phases")
        phases = self._build_phases(raw_phases, first_start=start, now=now)
        if phases[0]["start_date"] > now:
            schedule = self._new_schedule(
                customer=customer["id"],
                phases=phases,
                status="not_started",
                subscription=None,
                end_behavior=end_behavior,
                metadata=metadata,
            )
            self._emit("subscription_schedule.created", schedule)
            return copy.deepcopy(schedule)
        sub_id = new_id("sub_")
        schedule = self._new_schedule(
            customer=customer["id"],
            phases=phases,
            status="active",
            subscription=sub_id,
            end_behavior=end_behavior,
            metadata=metadata,
        )
        self._emit("subscription_schedule.created", schedule)
        self._start_subscription(
            customer["id"],
            self._phase_items(phases[0]),
            metadata=phases[0]["metadata"],
            schedule_id=schedule["id"],
            sub_id=sub_id,
        )
        return copy.deepcopy(schedule)

    def _check_schedule_mutable(self, schedule: StripeObj, action: str) -> None:
        if schedule["status"] not in ("not_started", "active"):
            raise FakeStripeError(
                f"You cannot {action} a subscription schedule that is currently in the `{schedule['status']}` "
                "status. It must be in one of the following statuses: `not_started`, `active`."
            )

    @_mutation
    def update_subscription_schedule(self, schedule_id: str, params: Params) -> StripeObj:
        schedule = self._get("subscription_schedule", schedule_id, label="subscription schedule")
        self._check_schedule_mutable(schedule, "update")
        now = self._now()
        before = copy.deepcopy(schedule)
        if "end_behavior" in params:
            schedule["end_behavior"] = _choice(params, "end_behavior", ("release", "cancel"), "release")
        if "metadata" in params:
            schedule["metadata"] = _apply_metadata(schedule["metadata"], params["metadata"])
        sub = self.objects.get(schedule["subscription"]) if schedule["subscription"] else None
        sub_before = copy.deepcopy(sub) if sub is not None else None
        invoice: StripeObj | None = None
        if "phases" in params:
            raw_phases = _list_param(params, "phases")
            if not raw_phases:
                raise _missing_param("phases")
            active = schedule["status"] == "active"
            current = schedule["current_phase"]
            first_start = current["start_date"] if active and current else schedule["phases"][0]["start_date"]
            phases = self._build_phases(raw_phases, first_start=first_start, now=now)
            if active and current and phases[0]["start_date"] != current["start_date"]:
                raise FakeStripeError(
                    "You can not modify the start date of the current phase.", param="phases[0][start_date]"
                )
            schedule["phases"] = phases
            if active:
                schedule["current_phase"] = {"end_date": phases[0]["end_date"], "start_date": phases[0]["start_date"]}
            if sub is not None and active:
                changes = self._reconcile_items(sub, self._phase_items(phases[0]))
                behavior = _choice(params, "proration_behavior", PRORATION_BEHAVIORS, phases[0]["proration_behavior"])
                invoice = self._handle_prorations(sub, changes, behavior, now)
        self._emit_updated("subscription_schedule.updated", schedule, before)
        if sub is not None and sub_before is not None:
            self._emit_updated("customer.subscription.updated", sub, sub_before)
        if invoice is not None:
            self._issue_invoice(invoice, pay=True)
        return copy.deepcopy(schedule)

    @_mutation
    def release_subscription_schedule(self, schedule_id: str, params: Params) -> StripeObj:
        schedule = self._get("subscription_schedule", schedule_id, label="subscription schedule")
        self._check_schedule_mutable(schedule, "release")
        sub_id = schedule["subscription"]
        schedule.update(
            status="released",
            released_at=self._now(),
            released_subscription=sub_id,
            subscription=None,
            current_phase=None,
        )
        self._emit("subscription_schedule.released", schedule)
        sub = self.objects.get(sub_id) if sub_id else None
        if sub is not None:
            before = copy.deepcopy(sub)
            sub["schedule"] = None
            self._emit_updated("customer.subscription.updated", sub, before)
        return copy.deepcopy(schedule)

    @_mutation
    def cancel_subscription_schedule(self, schedule_id: str, params: Params) -> StripeObj:
        schedule = self._get("subscription_schedule", schedule_id, label="subscription schedule")
        self._check_schedule_mutable(schedule, "cancel")
        now = self._now()
        schedule.update(status="canceled", canceled_at=now, current_phase=None)
        self._emit("subscription_schedule.canceled", schedule)
        sub = self.objects.get(schedule["subscription"]) if schedule["subscription"] else None
        if sub is not None and sub["status"] not in ("canceled", "incomplete_expired"):
            sub["canceled_at"] = now
            self._end_subscription(sub, at=now, reason="cancellation_requested")
        return copy.deepcopy(schedule)

    @_locked
    def list_subscription_schedules(self, params: Params) -> StripeObj:
        schedules = self._filter_eq(self._all("subscription_schedule"), params, {"customer": lambda s: s["customer"]})
        return self._paginate(schedules, params, "/v1/subscription_schedules")

    # ------------------------------------------------------------------
    # checkout sessions
    # ------------------------------------------------------------------

    @_mutation
    def create_checkout_session(self, params: Params) -> StripeObj:
        now = self._now()
        mode = _req_str(params, "mode")
        if mode not in ("payment", "subscription"):
            raise FakeStripeError(
                f"The fake Stripe server supports checkout mode `payment` and `subscription`, not `{mode}`.",
                param="mode",
            )
        customer_id = _opt_str(params, "customer")
        customer_email = _opt_str(params, "customer_email")
        if customer_id is not None and customer_email is not None:
            raise FakeStripeError(
                "You may only specify one of these parameters: customer, customer_email.", param="customer_email"
            )
        if customer_id is not None:
            self._customer(customer_id)
        customer_creation = _opt_str(params, "customer_creation")
        if customer_creation is not None:
            if mode == "subscription":
                raise FakeStripeError(
                    "`customer_creation` can only be used in `payment` and `setup` mode.", param="customer_creation"
                )
            if customer_creation not in ("always", "if_required"):
                raise FakeStripeError("Invalid customer_creation", param="customer_creation")

        raw_items = _list_param(params, "line_items")
        if not raw_items:
            raise _missing_param("line_items")
        line_items: list[StripeObj] = []
        currency: str | None = None
        for i, raw in enumerate(raw_items):
            p = f"line_items[{i}]"
            if not isinstance(raw, Mapping):
                raise FakeStripeError(f"Invalid object: {p}", param=p)
            price_id = _opt_str(raw, "price", f"{p}[price]")
            price_data = _sub_params(raw, "price_data", f"{p}[price_data]")
            if (price_id is None) == (not price_data):
                raise FakeStripeError(f"You must specify either `price` or `price_data` in {p}.", param=p)
            if price_id is not None:
                price = self._price(price_id, f"{p}[price]")
                if not price["active"]:
                    raise FakeStripeError(f"The price specified is inactive: {price_id}", param=f"{p}[price]")
            else:
                price = self._price_from_params(price_data, f"{p}[price_data]", emit=False, active=False)
            if currency is not None and price["currency"] != currency:
                raise FakeStripeError("All line items must have the same currency.", param=f"{p}[price]")
            currency = price["currency"]
            if mode == "payment" and price.get("recurring"):
                raise FakeStripeError(
                    "You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode "
                    "or use only one-time prices.",
                    param=f"{p}[price]",
                )
            quantity = _opt_int(raw, "quantity", f"{p}[quantity]")
            quantity = 1 if quantity is None else quantity
            if quantity < 1:
                raise FakeStripeError("Quantity must be at least 1.", param=f"{p}[quantity]")
            amount = price["unit_amount"] * quantity
            line_items.append(
                {
                    "id": new_id("li_"),
                    "object": "item",
                    "amount_discount": 0,
                    "amount_subtotal": amount,
                    "amount_tax": 0,
                    "amount_total": amount,
                    "currency": price["currency"],
                    "description": self._product_name(price),
                    "price": copy.deepcopy(price),
                    "quantity": quantity,
                }
            )
        if mode == "subscription" and not any(li["price"].get("recurring") for li in line_items):
            raise FakeStripeError(
                "You must specify at least one recurring price in `subscription` mode when using prices.",
                param="line_items",
            )
        subscription_data = _sub_params(params, "subscription_data")
        _apply_metadata({}, subscription_data.get("metadata"), "subscription_data[metadata]")
        trial_days = _opt_int(subscription_data, "trial_period_days", "subscription_data[trial_period_days]")
        if trial_days is not None and trial_days < 1:
            raise FakeStripeError("trial_period_days must be at least 1", param="subscription_data[trial_period_days]")
        payment_intent_data = _sub_params(params, "payment_intent_data")
        _apply_metadata({}, payment_intent_data.get("metadata"), "payment_intent_data[metadata]")

        total = sum(int(li["amount_total"]) for li in line_items)
        session_id = new_id("cs_test_", 58)
        session: StripeObj = {
            "id": session_id,
            "object": "checkout.session",
            "after_expiration": None,
            "allow_promotion_codes": (
                _as_bool(params["allow_promotion_codes"], "allow_promotion_codes")
                if "allow_promotion_codes" in params
                else None
            ),
            "amount_subtotal": total,
            "amount_total": total,
            "automatic_tax": {"enabled": False, "liability": None, "status": None},
            "billing_address_collection": _opt_str(params, "billing_address_collection"),
            "cancel_url": _opt_str(params, "cancel_url"),
            "client_reference_id": _opt_str(params, "client_reference_id"),
            "client_secret": None,
            "created": now,
            "currency": currency,
            "customer": customer_id,
            "customer_creation": (customer_creation or "if_required")
            if mode == "payment" and not customer_id
            else None,
            "customer_details": None,
            "customer_email": customer_email,
            "expires_at": _opt_int(params, "expires_at") or now + DAY,
            "invoice": None,
            "livemode": False,
            "locale": _opt_str(params, "locale"),
            "metadata": _apply_metadata({}, params.get("metadata")),
            "mode": mode,
            "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": "always",
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "status": "open",
            "submit_type": _opt_str(params, "submit_type"),
            "subscription": None,
            "success_url": _opt_str(params, "success_url"),
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": _opt_str(params, "ui_mode") or "hosted",
            "url": f"{self.base_url}/checkout/{session_id}",
        }
        self._store(session)
        self._line_items[session_id] = line_items
        # Kept off the public object: what completion needs from the create params.
        self._checkout_extra[session_id] = {
            "subscription_metadata": _apply_metadata({}, subscription_data.get("metadata")),
            "subscription_description": _opt_str(subscription_data, "description", "subscription_data[description]"),
            "trial_period_days": trial_days,
            "payment_intent_metadata": _apply_metadata({}, payment_intent_data.get("metadata")),
            "payment_intent_description": _opt_str(
                payment_intent_data, "description", "payment_intent_data[description]"
            ),
        }
        return copy.deepcopy(session)

    @_locked
    def list_checkout_sessions(self, params: Params) -> StripeObj:
        sessions = self._filter_eq(
            self._all("checkout.session"),
            params,
            {
                "customer": lambda s: s["customer"],
                "subscription": lambda s: s["subscription"],
                "payment_intent": lambda s: s["payment_intent"],
                "status": lambda s: s["status"],
            },
        )
        return self._paginate(sessions, params, "/v1/checkout/sessions")

    @_locked
    def list_checkout_line_items(self, session_id: str, params: Params) -> StripeObj:
        self._get("checkout.session", session_id)
        items = list(self._line_items.get(session_id, []))  # listed in the order they were given
        return self._paginate(items, params, f"/v1/checkout/sessions/{session_id}/line_items")

    @_mutation
    def expire_checkout_session(self, session_id: str) -> StripeObj:
        session = self._get("checkout.session", session_id)
        if session["status"] != "open":
            raise FakeStripeError('Only Checkout Sessions with a status in ["open"] can be expired.')
        session["status"] = "expired"
        self._emit("checkout.session.expired", session)
        return copy.deepcopy(session)

    @_mutation
    def complete_checkout_session(self, session_id: str, params: Params) -> StripeObj:
        """Control: the customer pays.  Returns ``{"object": session, "events": [...]}``."""
        mark = len(self.events)
        session = self._get("checkout.session", session_id)
        if session["status"] != "open":
            raise FakeStripeError(f"This Checkout Session is not open (status: `{session['status']}`).")
        extra = self._checkout_extra.get(session_id, {})
        email = _opt_str(params, "email") or session["customer_email"]
        name = _opt_str(params, "name")
        customer_id: str | None = session["customer"]
        if customer_id is not None:
            customer = self._customer(customer_id)
            email = email or customer.get("email")
            name = name or customer.get("name")
        email = email or "customer@example.com"
        if customer_id is None and (session["mode"] == "subscription" or session["customer_creation"] == "always"):
            customer_id = self._new_customer(email=email, name=name, metadata={})["id"]
        session["customer_details"] = {
            "address": None,
            "email": email,
            "name": name,
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        }
        line_items = self._line_items.get(session_id, [])
        if session["mode"] == "subscription":
            assert customer_id is not None
            recurring = [(li["price"], int(li["quantity"])) for li in line_items if li["price"].get("recurring")]
            one_time = [(li["price"], int(li["quantity"])) for li in line_items if not li["price"].get("recurring")]
            sub, invoice = self._start_subscription(
                customer_id,
                recurring,
                metadata=extra.get("subscription_metadata", {}),
                trial_days=extra.get("trial_period_days"),
                one_time=one_time,
                description=extra.get("subscription_description"),
            )
            session.update(subscription=sub["id"], invoice=invoice["id"], amount_total=invoice["amount_paid"])
            session["amount_subtotal"] = invoice["subtotal"]
            session["payment_status"] = "paid" if invoice["amount_paid"] > 0 else "no_payment_required"
        else:
            amount: int = session["amount_total"]
            if amount > 0:
                intent, _charge = self._collect_payment(
                    amount,
                    session["currency"],
                    customer_id,
                    description=extra.get("payment_intent_description"),
                    metadata=extra.get("payment_intent_metadata", {}),
                )
                session["payment_intent"] = intent["id"]
            session["payment_status"] = "paid" if amount > 0 else "no_payment_required"
        session.update(status="complete", customer=customer_id)
        self._emit("checkout.session.completed", session)
        return {"object": copy.deepcopy(session), "events": self._events_since(mark)}

    # ------------------------------------------------------------------
    # refunds and disputes
    # ------------------------------------------------------------------

    @_mutation
    def create_refund(self, params: Params) -> StripeObj:
        charge_id = _opt_str(params, "charge")
        intent_id = _opt_str(params, "payment_intent")
        if charge_id is None and intent_id is None:
            raise FakeStripeError("One of `charge` or `payment_intent` is required.", code="parameter_missing")
        if intent_id is not None:
            intent = self._get("payment_intent", intent_id, param="payment_intent", status=400)
            if not intent["latest_charge"]:
                raise FakeStripeError(
                    "This PaymentIntent does not have a successful charge to refund.", param="payment_intent"
                )
            if charge_id is not None and charge_id != intent["latest_charge"]:
                raise FakeStripeError("The charge does not belong to this PaymentIntent.", param="charge")
            charge_id = intent["latest_charge"]
        assert charge_id is not None
        charge = self._get("charge", charge_id, param="charge", status=400)
        refundable: int = charge["amount"] - charge["amount_refunded"]
        if refundable <= 0:
            raise FakeStripeError(
                f"Charge {charge_id} has already been refunded.", code="charge_already_refunded", param="charge"
            )
        amount = _opt_int(params, "amount")
        amount = refundable if amount is None else amount
        if amount <= 0:
            raise FakeStripeError("Invalid positive integer", param="amount")
        if amount > refundable:
            raise FakeStripeError(
                f"Refund amount ({_money(amount, charge['currency'])}) is greater than unrefunded amount on charge "
                f"({_money(refundable, charge['currency'])})",
                code="amount_too_large",
                param="amount",
            )
        reason = _opt_str(params, "reason")
        if reason is not None and reason not in ("duplicate", "fraudulent", "requested_by_customer"):
            raise FakeStripeError("Invalid reason", param="reason")
        refund: StripeObj = {
            "id": new_id("re_"),
            "object": "refund",
            "amount": amount,
            "balance_transaction": new_id("txn_"),
            "charge": charge_id,
            "created": self._now(),
            "currency": charge["currency"],
            "destination_details": {"card": {"type": "refund"}, "type": "card"},
            "livemode": False,
            "metadata": _apply_metadata({}, params.get("metadata")),
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }
        self._store(refund)
        before = copy.deepcopy(charge)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        self._emit("refund.created", refund)
        self._emit("charge.refunded", charge, _diff(before, charge))
        return copy.deepcopy(refund)

    @_locked
    def list_refunds(self, params: Params) -> StripeObj:
        refunds = self._filter_eq(
            self._all("refund"),
            params,
            {"charge": lambda r: r["charge"], "payment_intent": lambda r: r["payment_intent"]},
        )
        return self._paginate(refunds, params, "/v1/refunds")

    @_mutation
    def dispute_charge(self, charge_id: str, params: Params) -> StripeObj:
        """Control: open a dispute on a charge → ``charge.dispute.created``."""
        mark = len(self.events)
        charge = self._get("charge", charge_id)
        amount = _opt_int(params, "amount")
        amount = charge["amount"] if amount is None else amount
        now = self._now()
        dispute: StripeObj = {
            "id": new_id("dp_"),
            "object": "dispute",
            "amount": amount,
            "balance_transactions": [],
            "charge": charge_id,
            "created": now,
            "currency": charge["currency"],
            "evidence": {},
            "evidence_details": {
                "due_by": now + 7 * DAY,
                "has_evidence": False,
                "past_due": False,
                "submission_count": 0,
            },
            "is_charge_refundable": False,
            "livemode": False,
            "metadata": {},
            "payment_intent": charge["payment_intent"],
            "reason": _opt_str(params, "reason") or "fraudulent",
            "status": "needs_response",
        }
        self._store(dispute)
        charge["disputed"] = True
        self._emit("charge.dispute.created", dispute)
        return {"object": copy.deepcopy(dispute), "events": self._events_since(mark)}

    # ------------------------------------------------------------------
    # lists of read-only objects
    # ------------------------------------------------------------------

    @_locked
    def list_objects(self, kind: str, params: Params, url: str, filters: Sequence[str] = ()) -> StripeObj:
        objs = self._filter_eq(self._all(kind), params, {key: _field(key) for key in filters})
        return self._paginate(objs, params, url)

    # ------------------------------------------------------------------
    # billing portal
    # ------------------------------------------------------------------

    @_mutation
    def create_billing_portal_session(self, params: Params) -> StripeObj:
        customer = self._customer(_req_str(params, "customer"))
        session_id = new_id("bps_")
        session: StripeObj = {
            "id": session_id,
            "object": "billing_portal.session",
            "configuration": "bpc_fake",
            "created": self._now(),
            "customer": customer["id"],
            "flow": None,
            "livemode": False,
            "locale": _opt_str(params, "locale"),
            "on_behalf_of": None,
            "return_url": _opt_str(params, "return_url"),
            "url": f"{self.base_url}/billing_portal/{session_id}",
        }
        self._store(session)
        return copy.deepcopy(session)
