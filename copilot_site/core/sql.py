"""Hand-written SQL for the few hot writes, with every name and value taken from the models.

The ORM builds and compiles a query on every call: on the benchmark VM that is
~0.4-0.6 ms of CPU per statement, against ~0.1 ms for the same statement run
through ``connection.cursor()``. A worker ends dozens of turns a second while
hundreds of others stream in the same process, and the ORM work runs on a thread
that shares the GIL with the streaming loop, so every turn's end stalled the
other turns' chunks (`make bench`). The writes on that path (a turn's rows, its
usage, the spend history) go through these helpers; everything else
uses the ORM.

Table and column names come from ``_meta`` and are quoted by the backend (no
caller text ever becomes SQL); values go through each field's
``get_db_prep_save``, as the ORM's compiler does, so UUIDs, datetimes and JSON
are adapted for PostgreSQL and SQLite alike. ``RETURNING`` and ``ON CONFLICT``
need SQLite ≥ 3.35, which Python 3.11 ships with.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.db import connection, models
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

Model = type[models.Model]
P = ParamSpec("P")
R = TypeVar("R")


def connection_release() -> None:
    """Give this thread's database connection back to the process's pool.

    Django keeps one connection per thread until the thread's request ends; a
    thread that then waits (a Celery task waiting for its turn, a request thread
    under a live stream, an executor thread between calls) would hold a pooled
    connection for nothing, and enough of them exhaust the pool. Without a pool
    (SQLite, or PgBouncer pooling instead) the connection stays, as before.
    Inside a transaction it stays too: closing would roll it back.
    """
    if connection.connection is None or connection.in_atomic_block:
        return
    if connection.settings_dict.get("OPTIONS", {}).get("pool"):
        connection.close()


def connection_released(func: Callable[P, R]) -> Callable[P, R]:
    """`func`, giving its thread's connection back when it returns (for `sync_to_async`)."""

    @functools.wraps(func)
    def released(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        finally:
            connection_release()

    return released


@sync_and_async_middleware
def connection_release_middleware(
    get_response: Callable[[HttpRequest], Any],
) -> Callable[[HttpRequest], Any]:
    """A streaming response's thread gives its connection back before the stream starts.

    The view ran on the request's thread and its connection would otherwise stay
    checked out of the pool until the stream ends, one per live stream. Under
    ASGI the release runs on that same thread (`sync_to_async` in the request's
    thread-sensitive context).
    """
    if iscoroutinefunction(get_response):

        async def middleware_async(request: HttpRequest) -> HttpResponseBase:
            response: HttpResponseBase = await get_response(request)
            if response.streaming:
                await sync_to_async(connection_release)()
            return response

        return middleware_async

    def middleware(request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase = get_response(request)
        if response.streaming:
            connection_release()
        return response

    return middleware


def _name(name: str) -> str:
    return str(connection.ops.quote_name(name))


def _field(model: Model, name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field), f"{model.__name__}.{name} is not a concrete field"
    return field


def _column(model: Model, name: str) -> str:
    return _name(_field(model, name).column)


def _value(model: Model, name: str, raw: Any) -> Any:
    return _field(model, name).get_db_prep_save(raw, connection)


def _where(model: Model, where: Mapping[str, Any]) -> tuple[str, list[Any]]:
    sql = " AND ".join(f"{_column(model, name)} = %s" for name in where)
    return sql, [_value(model, name, raw) for name, raw in where.items()]


def _run(sql: str, params: Sequence[Any]) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount, (cursor.fetchall() if cursor.description else [])


def update(
    model: Model,
    *,
    where: Mapping[str, Any],
    values: Mapping[str, Any] | None = None,
    add: Mapping[str, int] | None = None,
) -> int:
    """``UPDATE … SET f = v, g = g + n WHERE k = x AND …``; the number of rows updated.

    ``values`` are stored as given, ``add`` amounts are added to the column
    (an ``F()`` update). Field names, not columns: ``session``, not ``session_id``.
    """
    values, add = values or {}, add or {}
    parts = [f"{_column(model, name)} = %s" for name in values]
    parts += [f"{_column(model, name)} = {_column(model, name)} + %s" for name in add]
    params = [_value(model, name, raw) for name, raw in values.items()] + [int(n) for n in add.values()]
    condition, where_params = _where(model, where)
    sql = f"UPDATE {_name(model._meta.db_table)} SET {', '.join(parts)} WHERE {condition}"  # noqa: S608 - names from _meta, quoted
    rowcount, _ = _run(sql, [*params, *where_params])
    return int(rowcount)


def max_value(model: Model, name: str, *, where: Mapping[str, Any]) -> Any:
    """``SELECT MAX(f) … WHERE …`` (None when no row matches)."""
    condition, params = _where(model, where)
    sql = f"SELECT MAX({_column(model, name)}) FROM {_name(model._meta.db_table)} WHERE {condition}"  # noqa: S608 - names from _meta, quoted
    _, rows = _run(sql, params)
    return rows[0][0] if rows else None


def value(model: Model, name: str, *, where: Mapping[str, Any]) -> Any:
    """``SELECT f … WHERE …`` of the first matching row (None when no row matches)."""
    condition, params = _where(model, where)
    sql = f"SELECT {_column(model, name)} FROM {_name(model._meta.db_table)} WHERE {condition}"  # noqa: S608 - names from _meta, quoted
    _, rows = _run(sql, params)
    return rows[0][0] if rows else None


def _insert_statement(objs: Sequence[models.Model]) -> tuple[str, list[Any], models.Field[Any, Any] | None]:
    """``INSERT INTO t (cols) VALUES (…), …`` for instances of one model, its parameters
    (each field's ``pre_save``, then ``get_db_prep_save``) and the generated primary
    key field the database fills in (None when the model has none)."""
    model = type(objs[0])
    concrete = model._meta.concrete_fields
    generated = next((f for f in concrete if f.primary_key and isinstance(f, models.AutoField)), None)
    fields = [f for f in concrete if f is not generated]
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in objs for f in fields]
    sql = (
        f"INSERT INTO {_name(model._meta.db_table)} ({', '.join(_name(f.column) for f in fields)})"  # noqa: S608 - names from _meta, quoted
        f" VALUES {', '.join([row] * len(objs))}"
    )
    return sql, params, generated


def insert(objs: Sequence[models.Model]) -> None:
    """INSERT unsaved instances of one model in one statement, as ``bulk_create`` would.

    Each field's ``pre_save`` runs (``auto_now_add`` stamps), generated primary
    keys are read back with ``RETURNING`` in insertion order (as Django's own bulk
    insert relies on) and set, and the instances are marked saved. No signals are
    sent, as with ``bulk_create``.
    """
    if not objs:
        return
    sql, params, generated = _insert_statement(objs)
    if generated is not None:
        sql += f" RETURNING {_name(generated.column)}"
    _, rows = _run(sql, params)
    for index, obj in enumerate(objs):
        if generated is not None:
            obj.pk = rows[index][0]
        obj._state.adding = False
        obj._state.db = connection.alias


def insert_or_add(obj: models.Model, *, unique: Sequence[str], add: Sequence[str]) -> None:
    """Insert ``obj``, or when a row with the same ``unique`` fields exists, add its ``add``
    fields to that row's and store its other fields (``INSERT … ON CONFLICT DO UPDATE``).

    One statement, so concurrent callers never lose an increment. ``unique`` must be
    a unique constraint of the model.
    """
    model = type(obj)
    sql, params, generated = _insert_statement([obj])
    unique_fields = {_field(model, name) for name in unique}
    added = {_field(model, name) for name in add}
    table = _name(model._meta.db_table)
    updates = []
    for field in model._meta.concrete_fields:
        if field is generated or field in unique_fields:
            continue
        column = _name(field.column)
        updates.append(
            f"{column} = {table}.{column} + excluded.{column}" if field in added else f"{column} = excluded.{column}"
        )
    sql += f" ON CONFLICT ({', '.join(_column(model, name) for name in unique)}) DO UPDATE SET {', '.join(updates)}"
    _run(sql, params)
