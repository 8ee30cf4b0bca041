"""Load test of `yoloworld serve` on loopback: throughput, latency, batch sizes and refusals under concurrent clients.

Starts `yoloworld serve` (the demo model unless --weights) on 127.0.0.1 and a free port, or drives --url. Every figure
comes from this run: the sequential baseline (one request at a time), closed loops of N clients each sending its
next request when the previous one is answered, then open loops (requests sent at a fixed rate whatever the answers)
at half the saturation rate (the best closed-loop throughput) and at twice it. Each request posts one synthetic JPEG;
a request is *lost* if it gets no HTTP answer (a timeout or a dropped connection), an *error* if it gets anything but
200, 429 or 503.

    python benchmarks/serve_load.py --requests 80 --open-seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import aiohttp
import cv2
import numpy as np

from yoloworld.data.synth import SynthConfig, draw_image


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)  # ms of the answered requests (200 or refused)
    statuses: list[int] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    lost: int = 0
    seconds: float = 0.0

    def add(self, status: int, ms: float, batch_size: int | None) -> None:
        self.statuses.append(status)
        self.latencies.append(ms)
        if batch_size:
            self.batch_sizes.append(batch_size)

    def row(self, name: str, baseline: float | None = None) -> str:
        ok = [ms for ms, status in zip(self.latencies, self.statuses) if status == 200]
        served = len(ok) / self.seconds if self.seconds else 0.0
        p50, p99 = (np.percentile(ok, 50), np.percentile(ok, 99)) if ok else (float("nan"),) * 2
        refused = sum(status in (429, 503) for status in self.statuses)
        errors = sum(status not in (200, 429, 503) for status in self.statuses)
        ratio = f"{served / baseline:.2f}x" if baseline else "-"
        batches = f"{statistics.mean(self.batch_sizes):.1f} / {max(self.batch_sizes)}" if self.batch_sizes else "-"
        return (f"| {name} | {len(self.statuses) + self.lost} | {served:.1f} | {ratio} | {p50:.0f} | {p99:.0f} | "
                f"{p99 / p50:.1f} | {batches} | {refused} | {errors} | {self.lost} |")


HEADER = ("| load | requests | answered 200/s | x sequential | p50 ms | p99 ms | p99/p50 | batch mean / max | "
          "refused (503/429) | errors | lost |\n|---|---|---|---|---|---|---|---|---|---|---|")


def synthetic_jpegs(count: int, side: int) -> list[bytes]:
    rng, config = np.random.default_rng(0), SynthConfig(min_side=side, max_side=side)
    return [cv2.imencode(".jpg", draw_image(rng, config)[0])[1].tobytes() for _ in range(count)]


async def post(session, url: str, image: bytes, stats: Stats, fields: dict) -> None:
    form = aiohttp.FormData(fields)
    form.add_field("image", image, filename="image.jpg", content_type="image/jpeg")
    start = time.perf_counter()
    try:
        async with session.post(f"{url}/v1/detect", data=form) as answer:
            await answer.read()
            batch = answer.headers.get("X-Batch-Size")
            stats.add(answer.status, (time.perf_counter() - start) * 1000, int(batch) if batch else None)
    except (aiohttp.ClientError, asyncio.TimeoutError):
        stats.lost += 1


def session(timeout_s: float) -> aiohttp.ClientSession:
    # no client-side connection limit: every request the load asks for is on the wire at once
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                 timeout=aiohttp.ClientTimeout(total=timeout_s))


async def closed_loop(url: str, images: list[bytes], clients: int, total: int, args) -> Stats:
    stats, sent = Stats(), iter(range(total))

    async def client(http) -> None:
        for index in sent:
            await post(http, url, images[index % len(images)], stats, args.fields)

    async with session(args.timeout) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        stats.seconds = time.perf_counter() - start
    return stats


async def open_loop(url: str, images: list[bytes], rate: float, seconds: float, args) -> Stats:
    stats, tasks = Stats(), []
    async with session(args.timeout) as http:
        start = time.perf_counter()
        for index in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + index / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(post(http, url, images[index % len(images)], stats, args.fields)))
        await asyncio.gather(*tasks)
        stats.seconds = time.perf_counter() - start
    return stats


def start_server(args) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "yoloworld", "serve", "--weights", args.weights, "--port", str(port),
               "--replicas", str(args.replicas), "--cpus-per-replica", str(args.cpus_per_replica),
               "--max-batch-size", str(args.max_batch_size), "--batch-wait-ms", str(args.batch_wait_ms),
               "--max-ongoing-requests", str(args.max_ongoing), "--max-queued-requests", str(args.max_queued)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if line.startswith("yoloworld serve: http"):
            return process, f"http://127.0.0.1:{port}"
    raise SystemExit(f"yoloworld serve exited with code {process.wait()}")


async def measure(url: str, args) -> None:
    images = synthetic_jpegs(16, args.side)
    await closed_loop(url, images, 4, 16, args)  # warm-up: the first batches of each size are slower
    baseline = await closed_loop(url, images, 1, args.requests // 2, args)
    sequential = len(baseline.statuses) / baseline.seconds
    rows = [baseline.row("sequential (1 client)", sequential)]
    best = sequential
    for clients in args.clients:
        stats = await closed_loop(url, images, clients, args.requests, args)
        best = max(best, sum(s == 200 for s in stats.statuses) / stats.seconds)
        rows.append(stats.row(f"{clients} clients", sequential))
        print(rows[-1], flush=True)
    for factor in (0.5, 2.0):
        stats = await open_loop(url, images, factor * best, args.open_seconds, args)
        rows.append(stats.row(f"open loop {factor:g}x saturation ({factor * best:.1f} req/s)", sequential))
        print(rows[-1], flush=True)
    print(f"\n{args.side}x{args.side} JPEGs, --weights {args.weights}, {args.replicas} replica(s) x "
          f"{args.cpus_per_replica} CPU, batches up to {args.max_batch_size} (wait {args.batch_wait_ms} ms), "
          f"{args.max_ongoing} ongoing + {args.max_queued} queued requests; saturation {best:.1f} req/s\n")
    print(HEADER)
    print("\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="drive this server instead of starting one")
    parser.add_argument("--weights", default="demo")
    parser.add_argument("--side", type=int, default=320, help="image side in pixels (default 320)")
    parser.add_argument("--requests", type=int, default=80, help="requests per closed-loop level (default 80)")
    parser.add_argument("--clients", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--open-seconds", type=float, default=15.0, help="length of each open loop (default 15)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a request counts as lost")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--cpus-per-replica", type=float, default=1.0)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-wait-ms", type=float, default=10.0)
    parser.add_argument("--max-ongoing", type=int, default=16)
    parser.add_argument("--max-queued", type=int, default=32)
    parser.add_argument("--conf", default="0.25")
    args = parser.parse_args()
    args.fields = {"conf": args.conf}
    process, url = (None, args.url) if args.url else start_server(args)
    try:
        asyncio.run(measure(url, args))
    finally:
        if process is not None:
            process.send_signal(2)  # SIGINT: serve shuts Ray down
            process.wait(60)


if __name__ == "__main__":
    main()
