"""The machine's own floor for the transport benchmark: ``python -m tests.bench.relay_floor``.

A live chunk crosses four process hops on loopback (scripted LLM → worker →
Redis → daphne → client). This sends stamped chunks through a chain of four hops
made of trivial asyncio relays (source → relay → relay → relay → sink, each its own
process, each relay only reads and forwards) at the benchmark's rate: N streams of
40 chunks, 100 ms apart, starting at random phases. What it prints is what the
kernel and the (virtual) machine alone cost per chunk at that load, before any of
the project's code runs: the benchmark's "added latency" cannot be lower.

On a VM whose idle vCPUs wake slowly this floor is milliseconds, not microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import socket
import time

CHUNKS = 40
GAP_S = 0.1


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


def _relay(listen: socket.socket, next_port: int) -> None:
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", next_port)
        await pipe(reader, up_writer)

    async def main() -> None:
        server = await asyncio.start_server(handle, sock=listen, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _source(first_port: int, streams: int, ready: multiprocessing.synchronize.Event) -> None:
    async def stream(phase: float) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", first_port)
        await asyncio.sleep(phase)
        for _ in range(CHUNKS):
            writer.write(b"%d;" % time.time_ns())
            await asyncio.sleep(GAP_S)
        writer.close()

    async def main() -> None:
        ready.wait()
        await asyncio.gather(*(stream(random.random() * GAP_S * 10) for _ in range(streams)))  # noqa: S311

    asyncio.run(main())


def measure(streams: int) -> tuple[float, float]:
    """(p50, p99) ms from the source's send to the sink's receive over four hops."""
    latencies: list[float] = []
    sink = _listener()
    sink_port = sink.getsockname()[1]
    relays: list[multiprocessing.Process] = []
    next_port = sink_port
    for _ in range(3):
        listen = _listener()
        relays.append(multiprocessing.Process(target=_relay, args=(listen, next_port), daemon=True))
        next_port = listen.getsockname()[1]
    ready = multiprocessing.Event()
    source = multiprocessing.Process(target=_source, args=(next_port, streams, ready), daemon=True)
    for process in (*relays, source):
        process.start()

    async def read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending = b""
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            while data := await reader.read(65536):
                now = time.time_ns()
                *stamps, pending = (pending + data).split(b";")
                latencies.extend((now - int(stamp)) / 1e6 for stamp in stamps)
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(read, sock=sink, backlog=1024)
        ready.set()
        deadline = time.monotonic() + 60
        while len(latencies) < streams * CHUNKS and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a count
            await asyncio.sleep(0.2)
        server.close()

    try:
        asyncio.run(main())
    finally:
        for process in (*relays, source):
            process.kill()
            process.join()
    ordered = sorted(latencies)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,50,200")
    args = parser.parse_args()
    print(f"machine floor: 4 loopback hops, trivial relays ({os.cpu_count()} CPUs), {CHUNKS} chunks 100 ms apart")
    for streams in [int(x) for x in args.levels.split(",") if x]:
        p50, p99 = measure(streams)
        print(f"  {streams:>4} streams: chunk p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")


if __name__ == "__main__":
    main()
