"""`mipd-edge serve` under load on loopback: throughput and latency at several numbers of
concurrent clients, with dynamic batching against ``--max-batch 1``, beside the in-process
Predictor, and (``--ray-replicas N``) the same server on Ray Serve with N replicas.

    python benchmarks/serve_load.py --model runs/quickstart/bundle-int8 [--backend openvino]
        [--precision int8] [--clients 1,4,16,64] [--requests 300] [--seconds 15] [--ray-replicas 2]
        [--out runs/serve-load]

The server runs as its own process (``mipd-edge serve``, as a user would start it); the clients
are keep-alive HTTP/1.1 connections driven by one asyncio loop in this process, each posting
one JPEG after the other (the request a camera gateway sends). Each point stops after
``--requests`` answers or ``--seconds``, whichever comes first. The in-process rows call
``Predictor.predict`` on the decoded JPEG from as many threads. The HTTP layer's cost is the
1-client p50 over HTTP minus the in-process one. Writes ``serve_load.json`` and
``serve_load.png`` and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mipd_edge import Predictor
from mipd_edge.cli import setup_logging
from mipd_edge.files import write_json
from mipd_edge.machine import device_info, library_versions
from mipd_edge.tables import render_table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_pattern() -> bytes:
    """A SynthSitu-sized JPEG (192 x 148) of blurred noise: what the clients send by default."""
    rng = np.random.default_rng(0)
    picture = cv2.GaussianBlur(rng.integers(0, 255, (148, 192, 3), np.uint8), (9, 9), 0)
    return cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def summary(latencies: list[float], seconds: float) -> dict[str, float]:
    ms = np.asarray(latencies) * 1e3
    return {"requests": len(ms), "throughput_rps": len(ms) / seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99))}


async def client(port: int, body: bytes, stop: dict, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    try:
        while not stop["now"]:
            started = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                if line.startswith(b"HTTP/1.1 ") and not line.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"the server answered {line.decode().strip()}")
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if len(latencies) >= stop["requests"] or time.perf_counter() > stop["until"]:
                stop["now"] = True
    finally:
        writer.close()


def http_load(port: int, body: bytes, clients: int, requests: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    stop = {"now": False, "requests": requests, "until": time.perf_counter() + seconds}

    async def run() -> None:
        await asyncio.gather(*(client(port, body, stop, latencies) for _ in range(clients)))
    started = time.perf_counter()
    asyncio.run(run())
    return summary(latencies, time.perf_counter() - started)


def in_process_load(predictor: Predictor, body: bytes, clients: int, requests: int, seconds: float) -> dict:
    """Decode and predict, as the server does per request, from ``clients`` threads."""
    latencies: list[float] = []
    until, lock = time.perf_counter() + seconds, threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if len(latencies) >= requests or time.perf_counter() > until:
                    return
            started = time.perf_counter()
            predictor.predict([cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)])
            with lock:
                latencies.append(time.perf_counter() - started)
    threads = [threading.Thread(target=work) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summary(latencies, time.perf_counter() - started)


def start_server(args: Any, port: int, max_batch: int, ray_replicas: tuple[int, int] = (0, 0)) -> subprocess.Popen:
    """``mipd-edge serve`` as a user starts it; on Ray Serve with ``ray_replicas`` (least, most)
    replicas of one CPU and one runtime thread each, where those are above 0."""
    command = [sys.executable, "-m", "mipd_edge.cli", "serve", args.model, "--port", str(port), "--backend",
               args.backend, "--precision", args.precision, "--max-batch", str(max_batch),
               "--max-queue", str(4 * max(args.clients)), "--workers", str(args.workers)]
    if ray_replicas[0]:
        command += ["--ray", "--min-replicas", str(ray_replicas[0]), "--max-replicas", str(ray_replicas[1]),
                    "--threads", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve_load: the server exited: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("serve_load: the server did not get ready in 120 s")


def plot(results: dict[str, Any], clients: list[int], path: Path) -> None:
    """Throughput (requests/s) against concurrent clients, a line per mode."""
    w, h, pad = 900, 520, 70
    modes = list(results["modes"])
    top = 1.15 * max(results["modes"][m][str(c)]["throughput_rps"] for m in modes for c in clients)
    canvas = np.full((h, w, 3), 255, np.uint8)

    def xy(i: int, value: float) -> tuple[int, int]:
        return int(pad + i / max(len(clients) - 1, 1) * (w - 2 * pad)), int(h - pad - value / top * (h - 2 * pad))

    colours = [(200, 80, 20), (30, 140, 30), (20, 60, 200), (150, 40, 150)]
    for k, mode in enumerate(modes):
        colour = colours[k % len(colours)]
        points = [xy(i, results["modes"][mode][str(c)]["throughput_rps"]) for i, c in enumerate(clients)]
        for a, b in zip(points, points[1:]):
            cv2.line(canvas, a, b, colour, 2, cv2.LINE_AA)
        for p in points:
            cv2.circle(canvas, p, 4, colour, -1, cv2.LINE_AA)
        cv2.putText(canvas, mode, (w - pad - 280, pad + 20 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    for i, c in enumerate(clients):
        x, _ = xy(i, 0)
        cv2.putText(canvas, str(c), (x - 8, h - pad + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "concurrent clients", (w // 2 - 70, h - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1,
                cv2.LINE_AA)
    cv2.putText(canvas, "requests/s", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for value in np.linspace(0, top, 5)[1:]:
        cv2.putText(canvas, f"{value:.0f}", (10, xy(0, value)[1] + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    cv2.imwrite(str(path), canvas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a bundle")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--clients", default="1,4,16,64")
    parser.add_argument("--requests", type=int, default=300, help="answers per point at most")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per point at most")
    parser.add_argument("--workers", type=int, default=1, help="the server's --workers")
    parser.add_argument("--ray-replicas", type=int, default=0, help="also on Ray Serve with this many replicas")
    parser.add_argument("--image", default=None, help="the JPEG to send (default: a SynthSitu-sized test pattern)")
    parser.add_argument("--out", default="runs/serve-load")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    setup_logging()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    body = Path(args.image).read_bytes() if args.image else test_pattern()
    date = datetime.datetime.now(datetime.timezone.utc)
    modes: dict[str, dict[str, Any]] = {}
    with Predictor(args.model, backend=args.backend, precision=args.precision) as predictor:
        in_process_load(predictor, body, 1, 30, 5)  # warm-up
        modes["in-process Predictor"] = {str(c): in_process_load(predictor, body, c, args.requests, args.seconds)
                                         for c in args.clients}
    servers = [("HTTP, batched (--max-batch 8)", 8, 0), ("HTTP, --max-batch 1", 1, 0)]
    if args.ray_replicas:
        servers.append((f"Ray Serve, {args.ray_replicas} replicas (--max-batch 8)", 8, args.ray_replicas))
    for name, max_batch, ray_replicas in servers:
        port = free_port()
        server = start_server(args, port, max_batch, (ray_replicas, ray_replicas))
        try:
            http_load(port, body, 1, 30, 5)  # warm-up
            modes[name] = {str(c): http_load(port, body, c, args.requests, args.seconds) for c in args.clients}
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    batched, single, local = (modes[k] for k in ("HTTP, batched (--max-batch 8)", "HTTP, --max-batch 1",
                                                 "in-process Predictor"))
    results = {"provenance": {"command": "python benchmarks/serve_load.py " + " ".join(sys.argv[1:]),
                              "date": date.isoformat(timespec="seconds"), "machine": device_info(),
                              "versions": library_versions()},
               "setup": {"bundle": args.model, "backend": args.backend, "precision": args.precision,
                         "image_bytes": len(body), "requests_per_point": args.requests,
                         "seconds_per_point": args.seconds, "server_workers": args.workers,
                         "ray_replicas": args.ray_replicas},
               "clients": args.clients, "modes": modes,
               "summary": {"http_cost_p50_ms_at_1_client": batched["1"]["p50_ms"] - local["1"]["p50_ms"],
                           "batching_gain_at_16_clients": (batched["16"]["throughput_rps"]
                                                           / single["16"]["throughput_rps"])
                           if "16" in batched else None}}
    on_ray = modes.get(servers[-1][0]) if args.ray_replicas else None
    if on_ray and "16" in on_ray and "16" in batched:
        results["summary"]["ray_serve_over_one_process_at_16_clients"] = (on_ray["16"]["throughput_rps"]
                                                                           / batched["16"]["throughput_rps"])
    write_json(out / "serve_load.json", results)
    plot(results, args.clients, out / "serve_load.png")
    rows = [["mode", "clients", "requests", "req/s", "p50 ms", "p99 ms"]]
    for mode, points in modes.items():
        for c, r in points.items():
            rows.append([mode, c, str(r["requests"]), f"{r['throughput_rps']:.1f}", f"{r['p50_ms']:.2f}",
                         f"{r['p99_ms']:.2f}"])
    print(render_table(rows, left=1))
    s = results["summary"]
    print(f"HTTP cost at 1 client (p50, batched server - in-process): {s['http_cost_p50_ms_at_1_client']:.2f} ms")
    if s["batching_gain_at_16_clients"]:
        print(f"batched / --max-batch 1 throughput at 16 clients: {s['batching_gain_at_16_clients']:.2f}x")
    if "ray_serve_over_one_process_at_16_clients" in s:
        print(f"Ray Serve / one process throughput at 16 clients: {s['ray_serve_over_one_process_at_16_clients']:.2f}x")
    print(f"\n{out / 'serve_load.json'}, {out / 'serve_load.png'}")


if __name__ == "__main__":
    main()
