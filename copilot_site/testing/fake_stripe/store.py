"""The one store of the fake Stripe API: object tables, id generation, clock, event log, request log,
idempotency records and injected failures.

Pure Python, no HTTP: every public method of the resource modules takes the decoded request
parameters (the nested dict the form parser produces, values still strings as Stripe receives them)
and returns a snapshot (a deep copy) of the resulting Stripe object.  Errors are raised as
:class:`FakeStripeError`, which carries the HTTP status and the Stripe-shaped error body.

One re-entrant lock (``store.lock``) guards everything; the HTTP layer holds it for the whole of a
request so idempotency checks and the work they protect are atomic.  A ``mutation`` is all or
nothing: an error rolls every object back and listeners only hear events of operations that succeeded.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

from copilot_site.testing.fake_stripe.errors import FakeStripeError
from copilot_site.testing.fake_stripe.params import (
    Params,
    StripeObj,
    as_int,
    diff,
    field,
    list_param,
    opt_int,
    opt_str,
)

logger = logging.getLogger(__name__)

API_VERSION = "2026-02-25.clover"
"""The API version the fake speaks: the one the installed ``stripe`` SDK pins (a test checks they agree)."""

DAY = 86_400
PERIOD_SECONDS: dict[str, int] = {"day": DAY, "week": 7 * DAY, "month": 30 * DAY, "year": 365 * DAY}
PRORATION_BEHAVIORS = ("create_prorations", "none", "always_invoice")
_ID_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    """An id shaped like Stripe's: ``prefix`` followed by random alphanumerics."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _wall_clock() -> int:
    return int(time.time())


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


_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S", bound="FakeStripeStore")


def locked(fn: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """Runs under the store's lock."""

    @wraps(fn)
    def wrapper(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self.lock:
            return fn(self, *args, **kwargs)

    return wrapper


def mutation(fn: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """Locked and all-or-nothing: an error rolls every object back, and listeners
    (webhook forwarding) only hear about events of operations that succeeded."""

    @wraps(fn)
    def wrapper(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
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


class FakeStripeStore:
    """All objects, events, the request log, idempotency records and injected failures: the one store every
    resource module reads and writes, with its lock, id generation, clock and event log."""

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
        self.api_version = api_version or API_VERSION
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

    @locked
    def reset(self) -> None:
        """Forget every object, event, logged request, idempotency key and pending failure."""
        self._clear()

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

    @locked
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

    @locked
    def logged_requests(self) -> list[StripeObj]:
        return copy.deepcopy(self.requests)

    @locked
    def idempotent_response(self, key: str) -> StoredResponse | None:
        return self._idempotency.get(key)

    @locked
    def store_idempotent_response(self, key: str, response: StoredResponse) -> None:
        self._idempotency.setdefault(key, response)

    @locked
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

    @locked
    def pending_failures(self) -> list[StripeObj]:
        return [rule.describe() for rule in self._failures]

    @locked
    def take_failure(self, method: str, path: str) -> FakeStripeError | None:
        for rule in self._failures:
            if path.startswith(rule.path_prefix) and (rule.method is None or rule.method == method.upper()):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._failures.remove(rule)
                return rule.error
        return None

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
        previous = diff(before, obj)
        if not previous:
            return None
        return self._emit(event_type, obj, previous)

    def _paginate(self, objs: list[StripeObj], params: Params, url: str) -> StripeObj:
        objs = self._filter_created(objs, params)
        limit = opt_int(params, "limit")
        if limit is None:
            limit = 10
        if limit < 1 or limit > 100:
            raise FakeStripeError("Invalid limit: must be between 1 and 100", param="limit")
        ids = [obj["id"] for obj in objs]
        starting_after = opt_str(params, "starting_after")
        ending_before = opt_str(params, "ending_before")
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
            exact = as_int(created, "created")
            return [obj for obj in objs if obj.get("created") == exact]
        bounds = {op: as_int(v, f"created[{op}]") for op, v in created.items() if op in ("gt", "gte", "lt", "lte")}

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
            wanted = opt_str(params, key)
            if wanted is not None:
                objs = [obj for obj in objs if getter(obj) == wanted]
        return objs

    @locked
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

    @locked
    def retrieve(self, kind: str, obj_id: str, label: str | None = None) -> StripeObj:
        return copy.deepcopy(self._get(kind, obj_id, label=label))

    @locked
    def list_objects(self, kind: str, params: Params, url: str, filters: Sequence[str] = ()) -> StripeObj:
        objs = self._filter_eq(self._all(kind), params, {key: field(key) for key in filters})
        return self._paginate(objs, params, url)

    @locked
    def list_events(self, params: Params) -> StripeObj:
        events = self._all("event")
        wanted_type = opt_str(params, "type")
        if wanted_type is not None:
            events = [e for e in events if fnmatch.fnmatchcase(e["type"], wanted_type)]
        types = [str(t) for t in list_param(params, "types")]
        if types:
            events = [e for e in events if any(fnmatch.fnmatchcase(e["type"], t) for t in types)]
        return self._paginate(events, params, "/v1/events")

    @locked
    def all_events(self) -> list[StripeObj]:
        """Every event, oldest first (for tests)."""
        return copy.deepcopy(self.events)

    def _events_since(self, mark: int) -> list[StripeObj]:
        return copy.deepcopy(self.events[mark:])
