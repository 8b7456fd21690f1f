"""Rate-limit benchmark: ``python -m tests.bench.bench_ratelimits`` (run by ``make bench``).

One process: an embedded redis-server on a free loopback port, a temporary SQLite
database migrated in-process, and 10,000 users spread over the tiers (1 % with an
override, 1 % with a personal cap, spend preloaded into Redis). It times the
pre-turn check (``turn_allowed_check``) for every user twice, cold (limits read
from the database, then cached) and warm, and the counter read alone
(``rate_limit_check`` with known limits). Round trips are counted by wrapping
redis-py's ``Connection.send_packed_command`` (one call = one request/response
exchange; a pipeline or an MGET is one), commands with ``INFO commandstats``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from unittest import mock

USERS = 10_000
TIERS = ["FREE"] * 70 + ["PRO"] * 20 + ["BUSINESS"] * 8 + ["ENTERPRISE"] * 2


def _setup(workdir: Path, redis_url: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "copilot_site.settings.test")
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ["COPILOT_VAR_DIR"] = str(workdir)
    os.environ["REDIS_URL"] = redis_url
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _populate(users: int, rng: random.Random) -> list[Any]:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from billing.models import CustomerAccount
    from ratelimits import redis_store
    from ratelimits.models import PersonalSpendCap, UserLimitOverride

    user_model = get_user_model()
    user_model.objects.bulk_create(
        [user_model(username=f"bench{i}", email=f"bench{i}@example.com", password="!") for i in range(users)],
        batch_size=2000,
    )
    people = list(user_model.objects.order_by("pk"))
    CustomerAccount.objects.bulk_create(
        [CustomerAccount(user=u, tier=rng.choice(TIERS)) for u in people], batch_size=2000
    )
    UserLimitOverride.objects.bulk_create(
        [
            UserLimitOverride(user=u, daily_limit_microdollars=3_000_000, reason="bench")
            for u in rng.sample(people, users // 100)
        ]
    )
    PersonalSpendCap.objects.bulk_create(
        [PersonalSpendCap(user=u, daily_cap_microdollars=200_000) for u in rng.sample(people, users // 100)]
    )
    now = timezone.now()
    pipe = redis_store.redis_client().pipeline(transaction=False)
    for user in people:
        spent = rng.choice([0, 0, rng.randrange(1, 900_000), 1_000_000, 2_500_000])
        if spent:
            pipe.set(redis_store.daily_key(user.pk, now), spent, ex=3600)
            pipe.set(redis_store.weekly_key(user.pk, now), spent * 2, ex=3600)
    pipe.execute()
    return people


@contextmanager
def _count_round_trips() -> Iterator[list[int]]:
    import redis

    calls = [0]
    original = redis.connection.Connection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        calls[0] += 1
        original(self, command, check_health)

    with mock.patch.object(redis.connection.Connection, "send_packed_command", counting):
        yield calls


def _command_count() -> int:
    from ratelimits import redis_store

    stats = redis_store.redis_client().info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def _timed(users: list[Any], call: Callable[[Any], None]) -> tuple[list[float], int, int, int]:
    """(latencies in µs, round trips, Redis commands, DB queries) over one call per user."""
    from django.db import connection

    queries = [0]

    def count_query(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        queries[0] += 1
        return execute(sql, params, many, context)

    latencies = []
    commands_before = _command_count()
    with _count_round_trips() as trips, connection.execute_wrapper(count_query):
        for user in users:
            started = time.perf_counter_ns()
            call(user)
            latencies.append((time.perf_counter_ns() - started) / 1000)
        round_trips = trips[0]
    commands = _command_count() - commands_before - 1  # minus the INFO that measured
    return latencies, round_trips, commands, queries[0]


def _report(label: str, users: int, result: tuple[list[float], int, int, int]) -> None:
    latencies, round_trips, commands, queries = result
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"{label:<44} p50 {p50:8.1f} µs   p99 {p99:8.1f} µs   "
        f"round trips/check {round_trips / users:5.2f}   commands/check {commands / users:5.2f}   "
        f"DB queries/check {queries / users:5.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=USERS)
    args = parser.parse_args()

    from copilot_site.core.embedded_redis import free_port, start_redis, stop_process

    workdir = Path(tempfile.mkdtemp(prefix="copilot-bench-ratelimits-"))
    port = free_port()
    server = start_redis(port, workdir / "redis")
    try:
        _setup(workdir, f"redis://127.0.0.1:{port}/0")
        from ratelimits.errors import RateLimitExceeded
        from ratelimits.selectors import limits_resolve, rate_limit_check
        from ratelimits.services import turn_allowed_check

        rng = random.Random(6)  # noqa: S311 - reproducible data, not security
        people = _populate(args.users, rng)
        rng.shuffle(people)
        blocked = [0]

        def turn_check(user: Any) -> None:
            try:
                turn_allowed_check(user=user)
            except RateLimitExceeded:
                blocked[0] += 1

        limits: dict[int, Any] = {}

        def counters_only(user: Any) -> None:
            user_limits = limits[user.pk]
            with suppress(RateLimitExceeded):
                rate_limit_check(user=user, daily=user_limits.daily, weekly=user_limits.weekly)

        print(f"ratelimits: {len(people)} users, embedded redis-server on 127.0.0.1:{port}, SQLite")
        _report("turn_allowed_check, cold cache (DB + cache)", len(people), _timed(people, turn_check))
        blocked[0] = 0
        _report("turn_allowed_check, warm cache", len(people), _timed(people, turn_check))
        print(f"  {blocked[0]} of {len(people)} checks refused (over a limit)")
        limits.update((user.pk, limits_resolve(user=user)) for user in people)
        _report("rate_limit_check (counters only)", len(people), _timed(people, counters_only))
    finally:
        stop_process(server)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
