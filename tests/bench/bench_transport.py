"""Live-turn benchmark: ``python -m tests.bench.bench_transport`` (run by ``make bench``).

Real processes on loopback: an embedded redis-server, the scripted LLM server
(its own process, stamping every text delta with its send time), daphne, and ONE
Celery worker on the `threads` pool (each turn runs on its own thread's event
loop; the worker holds as many live turns as it has threads). The benchmark
process only runs WebSocket clients. For N concurrent turns it prints:

- added latency per chunk: the LLM server's send → the browser-side client's
  receive, through worker → Redis Stream → daphne → WebSocket (p50/p99);
- added time to first token: client `send` → first text delta, minus the
  script's own first delay (0);
- turns/s and chunks/s over the whole run; peak RSS of web and worker.

Figures are printed, never asserted. Database: a temporary SQLite file, or
DATABASE_URL when set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import uvloop

BASE_DIR = Path(__file__).resolve().parents[2]


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _reference_ms() -> str:
    """The machine's speed right now: five runs of a fixed pure-Python loop (JSON round
    trips of a chunk-sized frame, the kind of work every hop does), as "median (min-max)" ms.
    This VM reports no steal time, yet the same loop runs at one of two speeds (~42 or
    ~68 ms here, on either vCPU, from one second to the next); printing it next to the
    figures says which hour they come from (lower is faster)."""
    frame = {"event_id": "1700000000000-0", "turn_id": "t" * 32, "chunk": {"type": "text-delta", "delta": "x" * 40}}
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(10_000):
            json.loads(json.dumps(frame))
        runs.append((time.perf_counter() - started) * 1000)
    runs.sort()
    return f"{runs[2]:.0f} ({runs[0]:.0f}-{runs[-1]:.0f}) ms"


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


class Stack:
    def __init__(self, workdir: Path, worker_threads: int) -> None:
        from copilot_site.core.embedded_redis import free_port, start_redis

        self.workdir = workdir
        redis_port = free_port()
        self.redis = start_redis(redis_port, workdir / "redis")
        llm_port = free_port()
        database = os.environ.get("DATABASE_URL") or f"sqlite:///{workdir / 'bench.sqlite3'}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "copilot_site.settings.test",
            "DATABASE_URL": database,
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/1",
            "COPILOT_VAR_DIR": str(workdir),
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
            "COPILOT_MODEL": "openai/gpt-4o-mini",
            "COPILOT_DAILY_COST_LIMIT_MICRODOLLARS": "0",
            "COPILOT_WEEKLY_COST_LIMIT_MICRODOLLARS": "0",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.update({k: self.env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL",
                                                      "CELERY_BROKER_URL", "COPILOT_VAR_DIR")})  # fmt: skip
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        self.llm = self._spawn(
            "llm", [sys.executable, "-m", "copilot_site.testing.llm_script", "--port", str(llm_port)]
        )
        self.web_port = free_port()
        self.web = self._spawn(
            "web",
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.web_port),
                "copilot_site.asgi:application",
            ],
        )
        self.worker = self._spawn(
            "worker",
            [sys.executable, "-m", "celery", "-A", "copilot_site", "worker", "--pool=threads",
             f"--concurrency={worker_threads}", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
             "-n", "bench@%h"],
        )  # fmt: skip
        self._wait_http(f"http://127.0.0.1:{self.web_port}/healthz", expect_worker=True)

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        return subprocess.Popen(command, cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603
                                start_new_session=True)  # fmt: skip

    def _wait_http(self, url: str, *, expect_worker: bool) -> None:
        import httpx

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                response = httpx.get(url, timeout=3)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"stack did not become healthy; see {self.workdir}")

    def stop(self) -> None:
        from copilot_site.core.embedded_redis import stop_process

        for process in (self.web, self.worker, self.llm, self.redis):
            stop_process(process)


def _prepare(n: int) -> list[tuple[str, str]]:
    """N people, each with an API key and one titled chat: (key, session id) per turn.

    One user per turn, as live turns come from different people: a user's sockets also
    get a completion notice for each of that user's turns, so N turns of one user with
    N sockets open would cost N² notices, a load no real user makes.
    """
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from chat.models import ChatSession
    from copilot_site.accounts.services import api_key_create

    tag = uuid.uuid4().hex[:8]
    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"bench-{tag}-{i}", password=make_password(None)) for i in range(n)]
    )
    # Titled, as most turns are follow-ups: the first message of a chat also runs a title task.
    sessions = ChatSession.objects.bulk_create([ChatSession(user=user, title="bench") for user in users])
    return [(api_key_create(user=user, name="bench")[1], str(s.pk)) for user, s in zip(users, sessions, strict=True)]


_HANDSHAKES = 32  # concurrent WebSocket handshakes (a burst of hundreds overflows the accept backlog)


async def _one_turn(
    base: str, key: str, session_id: str, script: str, result: dict[str, Any], gate: asyncio.Semaphore
) -> None:
    import websockets

    url = base.replace("http://", "ws://") + f"/ws/chat/{session_id}/"
    headers = {"Authorization": f"Bearer {key}", "Origin": base}
    async with gate:
        ws = await websockets.connect(url, additional_headers=headers, open_timeout=60, max_queue=None)
        await ws.recv()  # ready
    # One deadline for the whole turn: a `wait_for` per frame would cost the client a task
    # and a timer for every chunk, inside the latency being measured.
    async with ws, asyncio.timeout(300):
        sent_at = time.time_ns()
        await ws.send(json.dumps({"type": "send", "message": "bench " + script}))
        while True:
            text = await ws.recv()
            received = time.time_ns()
            frame = json.loads(text)
            chunk = frame.get("chunk")
            if not chunk:
                continue
            if chunk["type"] == "text-delta":
                # The stream entry id starts with Redis's clock at XADD (ms): it splits
                # the path into LLM → worker → XADD and XADD → daphne → client.
                xadd_ms = int(str(frame.get("event_id") or "0").split("-")[0])
                for stamp in chunk["delta"].split(";"):
                    if stamp.startswith("@"):
                        result["latencies_ms"].append((received - int(stamp[1:])) / 1e6)
                        result["received_ns"].append(received)
                        if xadd_ms:
                            result["up_ms"].append(xadd_ms - int(stamp[1:]) / 1e6)
                            result["down_ms"].append(received / 1e6 - xadd_ms)
                        result["chunks"] += 1
                if result.get("ttft_ms") is None:
                    result["ttft_ms"] = (received - sent_at) / 1e6
            elif chunk["type"] in ("finish", "error"):
                result["ok"] = chunk["type"] == "finish" and not result.get("error")
                if chunk["type"] == "error":
                    result["error"] = chunk.get("errorText")
                return


async def _run(
    base: str, turns: list[tuple[str, str]], chunks: int, delay_ms: int, first_delay_ms: int = 0
) -> dict[str, Any]:
    round_ = {"stamp": True, "chunks": chunks, "delay_ms": delay_ms, "first_delay_ms": first_delay_ms}
    script = "<<fake " + json.dumps({"rounds": [round_]}) + ">>"
    results = [
        {"latencies_ms": [], "received_ns": [], "up_ms": [], "down_ms": [], "chunks": 0, "ttft_ms": None} for _ in turns
    ]
    started = time.monotonic()
    gate = asyncio.Semaphore(_HANDSHAKES)
    await asyncio.gather(
        *(_one_turn(base, key, sid, script, r, gate) for (key, sid), r in zip(turns, results, strict=True))
    )
    elapsed = time.monotonic() - started
    latencies = [v for r in results for v in r["latencies_ms"]]
    ttfts = [r["ttft_ms"] for r in results if r["ttft_ms"] is not None]
    up = [v for r in results for v in r["up_ms"]]
    down = [v for r in results for v in r["down_ms"]]
    timeline = sorted((t, v) for r in results for t, v in zip(r["received_ns"], r["latencies_ms"], strict=True))
    return {
        "timeline": timeline,
        "turns": len(turns),
        "completed": sum(1 for r in results if r.get("ok")),
        "errors": sorted({r["error"] for r in results if r.get("error")}),
        "elapsed_s": elapsed,
        "chunks": sum(r["chunks"] for r in results),
        "p50_ms": _percentile(latencies, 50),
        "p99_ms": _percentile(latencies, 99),
        "up_p50_ms": _percentile(up, 50),
        "up_p99_ms": _percentile(up, 99),
        "down_p50_ms": _percentile(down, 50),
        "down_p99_ms": _percentile(down, 99),
        "ttft_p50_ms": _percentile(ttfts, 50) - first_delay_ms,
        "ttft_p99_ms": _percentile(ttfts, 99) - first_delay_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,50,200", help="concurrent turns per round")
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--delay-ms", type=int, default=100, help="gap between chunks of one turn (10 chunks/s)")
    parser.add_argument("--profile", default="", help="py-spy record the worker into this SVG (needs py-spy)")
    parser.add_argument("--cpu", action="store_true", help="print CPU seconds per process for each level")
    parser.add_argument("--dump", default="", help="write each level's (receive ns, latency ms) list to DUMP-N.json")
    parser.add_argument("--hold", type=int, default=500, help="live turns to hold at once (0 to skip)")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x]
    threads = max([*levels, args.hold]) + 8
    with tempfile.TemporaryDirectory(prefix="copilot-bench-") as tmp:
        stack = Stack(Path(tmp), threads)
        base = f"http://127.0.0.1:{stack.web_port}"
        try:
            print(f"worker: 1 process, threads pool x{threads}; web: 1 daphne; redis + scripted LLM on loopback")
            from tests.bench.relay_floor import measure as floor

            floors = ", ".join(f"{n}: p50 {p50:.2f} / p99 {p99:.2f} ms" for n in levels for p50, p99 in [floor(n)])
            print(f"machine floor (4 loopback hops through trivial relays, same rate): {floors}")
            print(f"machine speed: reference loop {_reference_ms()} (lower is faster)")
            warm = [uvloop.run(_run(base, _prepare(1), 10, 20)) for _ in range(5)]
            ttft = sorted(w["ttft_p50_ms"] for w in warm)
            print(f"time to first token, one turn at a time (5 runs): median {ttft[2]:.1f} ms, max {ttft[-1]:.1f} ms")
            print(f"{'turns':>6} {'done':>5} {'chunk p50':>10} {'chunk p99':>10} {'ttft p50':>9} {'ttft p99':>9}"
                  f" {'turns/s':>8} {'chunks/s':>9}")  # fmt: skip
            spy = None
            if args.profile:
                spy_cmd = ["py-spy", "record", "-o", args.profile, "-p", str(stack.worker.pid), "-r", "200",
                           "--format", "raw", "--nonblocking"]  # fmt: skip
                spy = subprocess.Popen(spy_cmd)  # noqa: S603
            procs = {"web": stack.web.pid, "worker": stack.worker.pid, "llm": stack.llm.pid, "redis": stack.redis.pid}
            for n in levels:
                turns = _prepare(n)
                before = {name: _cpu_s(pid) for name, pid in procs.items()} | {"bench": time.process_time()}
                # Every turn is started (and live) before any streams: the first chunk is
                # held back long enough for all N turns to start, so the latencies below
                # are per-chunk figures with N turns live, not start-up queueing.
                hold_ms = 0 if n == 1 else 3000 + 150 * n
                r = uvloop.run(_run(base, turns, args.chunks, args.delay_ms, hold_ms))
                after = {name: _cpu_s(pid) for name, pid in procs.items()} | {"bench": time.process_time()}
                cpu = {name: after[name] - before[name] for name in after}
                print(f"{n:>6} {r['completed']:>5} {r['p50_ms']:>8.2f}ms {r['p99_ms']:>8.2f}ms"
                      f" {r['ttft_p50_ms']:>7.1f}ms"
                      f" {r['ttft_p99_ms']:>7.1f}ms {n / r['elapsed_s']:>8.1f} {r['chunks'] / r['elapsed_s']:>9.0f}"
                      + (f"  errors: {r['errors']}" if r["errors"] else ""))  # fmt: skip
                print(f"        split at the XADD: LLM → worker → Redis p50 {r['up_p50_ms']:.1f} / p99"
                      f" {r['up_p99_ms']:.1f} ms; Redis → daphne → client p50 {r['down_p50_ms']:.1f} / p99"
                      f" {r['down_p99_ms']:.1f} ms (Redis clock, 1 ms resolution)")  # fmt: skip
                if args.dump:
                    Path(f"{args.dump}-{n}.json").write_text(json.dumps(r["timeline"]))
                if args.cpu:
                    print("        cpu s: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
                          + f"; reference loop now {_reference_ms()}")  # fmt: skip
            if args.hold:
                r = uvloop.run(_run(base, _prepare(args.hold), 20, 250, 3000 + 150 * args.hold))
                print(f"held {args.hold} live turns at once (20 chunks, 250 ms apart): {r['completed']} completed,"
                      f" chunk p50 {r['p50_ms']:.2f}ms p99 {r['p99_ms']:.2f}ms"
                      + (f", errors: {r['errors']}" if r["errors"] else ""))  # fmt: skip
            if spy is not None:
                spy.send_signal(2)
                spy.wait(timeout=60)
            print(f"peak RSS: web {_peak_rss_mb(stack.web.pid):.0f} MB, worker {_peak_rss_mb(stack.worker.pid):.0f} MB")
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
