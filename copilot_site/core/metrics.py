"""Prometheus metrics: every definition, and the one-line helpers the code calls where events happen.

Values come from the web (daphne) and the worker (Celery) processes alike through
prometheus-client's *multiprocess mode*: each process writes its values to small
memory-mapped files named after its pid in ``PROMETHEUS_MULTIPROC_DIR`` (set by the
settings, ``var/prometheus`` by default), and a scrape of ``/metrics`` in any web
process merges every file in that directory.

Why files rather than a Redis-backed registry: an increment is a write to local
memory (no network round trip on the turn's hot path, which relays every chunk),
and the counters keep counting while Redis is down, which is one of the failures
they report. The price: every process must see the same directory (one machine,
or a volume shared by the web and worker containers); the directory must start
empty (``runstack`` clears it before starting its children, and each process
removes the files of its own pid when it first imports this module, so a reused
pid never inherits old values); and a gauge of a process that died is dropped at
scrape time (``multiprocess_dead_gauges_drop``). Counters of a dead process keep
counting in the sum, as Prometheus expects of counters.

With ``PROMETHEUS_MULTIPROC_DIR`` empty the metrics stay in each process's memory
and ``/metrics`` shows only the web process's own values.

This module imports no app: apps call it, never the other way round.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Awaitable, Iterable
from typing import TypeVar

import redis
from django.conf import settings
from django.db import DatabaseError, transaction

# prometheus-client picks its mode when imported, from the environment, which the
# settings set (PROMETHEUS_MULTIPROC_DIR): load them first.
getattr(settings, "PROMETHEUS_MULTIPROC_DIR", None)

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram  # noqa: E402
from prometheus_client.core import GaugeMetricFamily, Metric  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead  # noqa: E402
from prometheus_client.registry import REGISTRY, Collector  # noqa: E402

T = TypeVar("T")


def multiprocess_dir() -> str:
    """The shared directory of multiprocess mode ('' when it is off)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def _own_files_remove() -> None:
    directory = multiprocess_dir()
    if directory:
        for path in glob.glob(os.path.join(directory, f"*_{os.getpid()}.db")):
            os.remove(path)


# Before any value exists: files left by an earlier process with this pid are not ours.
_own_files_remove()


def multiprocess_dir_clear() -> None:
    """Empty the shared directory; called by the supervisor before it starts the processes."""
    directory = multiprocess_dir()
    if directory:
        for path in glob.glob(os.path.join(directory, "*.db")):
            os.remove(path)


def multiprocess_dead_gauges_drop() -> None:
    """Forget the live gauges (``turns running``) of processes that no longer exist."""
    directory = multiprocess_dir()
    if not directory:
        return
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid_text = os.path.basename(path).rsplit("_", 1)[-1].removesuffix(".db")
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            mark_process_dead(int(pid_text), directory)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, owned by another user


# Seconds: from a few milliseconds (relay) to the turn time limit.
_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_TURN_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

TURNS_STARTED = Counter("copilot_turns_started", "Turns a worker started running.")
TURNS_FINISHED = Counter(
    "copilot_turns_finished", "Turns that ended without an error, by outcome (completed, stopped).", ["outcome"]
)
TURNS_FAILED = Counter("copilot_turns_failed", "Turns that ended with an error, by reason.", ["reason"])
TURNS_RUNNING = Gauge("copilot_turns_running", "Turns running now.", multiprocess_mode="livesum")
TURN_TIME_TO_FIRST_TOKEN = Histogram(
    "copilot_turn_time_to_first_token_seconds",
    "From the user's message arriving to the turn's first text or reasoning token.",
    buckets=_TURN_BUCKETS,
)
TURN_DURATION = Histogram(
    "copilot_turn_duration_seconds", "Wall time of a turn on its worker, start to end.", buckets=_TURN_BUCKETS
)
CHUNK_RELAY_LATENCY = Histogram(
    "copilot_chunk_relay_latency_seconds",
    "From a chunk entering the turn's Redis stream to a relay (SSE or WebSocket) sending it live.",
    buckets=_FAST_BUCKETS,
)
TOOL_CALLS = Counter("copilot_tool_calls", "Tool calls, by tool and outcome (success, error).", ["tool", "outcome"])
RATE_LIMIT_REFUSALS = Counter("copilot_rate_limit_refusals", "Sends refused by a rate limit, by window.", ["window"])
CREDITS_CHARGED = Counter("copilot_credits_charged_cents", "Credits charged (cents), as committed.")
STRIPE_WEBHOOK_EVENTS = Counter(
    "copilot_stripe_webhook_events", "Stripe webhook deliveries, by event type and outcome.", ["type", "outcome"]
)
REDIS_ERRORS = Counter("copilot_redis_errors", "Redis calls that failed (connection, timeout, server error).")
DATABASE_ERRORS = Counter("copilot_database_errors", "Database calls that failed.")

# --- the helpers the code calls (one line each) ---------------------------------------------


async def turn_observed(awaitable: Awaitable[T]) -> T:
    """Await one turn's run: counted as started and running while it runs, its duration observed."""
    TURNS_STARTED.inc()
    TURNS_RUNNING.inc()
    started = time.monotonic()
    try:
        return await awaitable
    finally:
        TURNS_RUNNING.dec()
        TURN_DURATION.observe(time.monotonic() - started)


def turn_ended(*, failure_reason: str | None, stopped: bool) -> None:
    if failure_reason is not None:
        TURNS_FAILED.labels(reason=failure_reason).inc()
    else:
        TURNS_FINISHED.labels(outcome="stopped" if stopped else "completed").inc()


def first_token_observe(*, arrived_at: float) -> None:
    """The turn's first token is out; `arrived_at` is the message's arrival (epoch seconds)."""
    TURN_TIME_TO_FIRST_TOKEN.observe(max(time.time() - arrived_at, 0.0))


def chunk_relayed(entry_id: str) -> None:
    """A live chunk is being sent; its Redis stream id starts with the append time in milliseconds.

    Both clocks are the machine's when Redis runs beside the web process; across machines
    the figure includes their clock skew.
    """
    ms = entry_id.partition("-")[0]
    if ms.isdigit():
        CHUNK_RELAY_LATENCY.observe(max(time.time() - int(ms) / 1000, 0.0))


def tool_call_count(*, tool: str, success: bool) -> None:
    TOOL_CALLS.labels(tool=tool, outcome="success" if success else "error").inc()


def rate_limit_refused(*, window: str) -> None:
    RATE_LIMIT_REFUSALS.labels(window=window).inc()


def credits_charged(*, cents: int) -> None:
    """Counted once the charge commits (at once outside a transaction); replays charge 0."""
    if cents > 0:
        transaction.on_commit(lambda: CREDITS_CHARGED.inc(cents))


def stripe_webhook_count(*, event_type: str, outcome: str) -> None:
    STRIPE_WEBHOOK_EVENTS.labels(type=event_type, outcome=outcome).inc()


def failure_count(exc: BaseException) -> None:
    """Count `exc` if it is a Redis or database failure (anything else is not counted here)."""
    if isinstance(exc, redis.RedisError):
        REDIS_ERRORS.inc()
    elif isinstance(exc, DatabaseError):
        DATABASE_ERRORS.inc()


# --- scrape time ----------------------------------------------------------------------------

# kombu's Redis transport keeps a queue's messages of priority 0 under the queue's
# name and those of the other default priority steps (3, 6, 9) under name + sep + step.
_KOMBU_PRIORITY_SEP = "\x06\x16"
_KOMBU_PRIORITY_STEPS = (3, 6, 9)


class QueueDepthCollector(Collector):
    """``copilot_celery_queue_depth{queue}``, read from the broker at scrape time.

    Only for a Redis broker (LLEN of the queue's lists). With RabbitMQ the metric is
    absent: RabbitMQ's own Prometheus plugin reports queue depths.
    """

    def __init__(self, broker_url: str, queues: Iterable[str]) -> None:
        self.broker_url = broker_url
        self.queues = list(queues)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        if not self.broker_url.startswith(("redis://", "rediss://", "unix://")):
            return []
        family = GaugeMetricFamily(
            "copilot_celery_queue_depth", "Messages waiting in each Celery queue (Redis broker).", labels=["queue"]
        )
        try:
            client = redis.Redis.from_url(self.broker_url, socket_timeout=2, socket_connect_timeout=2)
            try:
                pipe = client.pipeline(transaction=False)
                for queue in self.queues:
                    pipe.llen(queue)
                    for step in _KOMBU_PRIORITY_STEPS:
                        pipe.llen(f"{queue}{_KOMBU_PRIORITY_SEP}{step}")
                lengths = pipe.execute()
            finally:
                client.close()
        except redis.RedisError as exc:
            failure_count(exc)
            return []
        per_queue = 1 + len(_KOMBU_PRIORITY_STEPS)
        for index, queue in enumerate(self.queues):
            family.add_metric([queue], float(sum(lengths[index * per_queue : (index + 1) * per_queue])))
        return [family]


def registry_for_scrape(*, broker_url: str, queues: Iterable[str]) -> CollectorRegistry:
    """What one scrape exposes: every process's values (or this one's) and the queue depths."""
    directory = multiprocess_dir()
    registry = CollectorRegistry()
    if directory:
        multiprocess_dead_gauges_drop()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ProcessRegistry())
    registry.register(QueueDepthCollector(broker_url, queues))
    return registry


class _ProcessRegistry(Collector):
    """This process's default registry, as one collector of the scrape registry."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()
