"""Ray Serve's autoscaler under load, on loopback: ``mipd-edge serve --ray --min-replicas 1
--max-replicas 2``, then 16 keep-alive clients posting a JPEG in 5-second windows, the
replicas counted after each window through Ray's state API, until the deployment has scaled
up and held its new size for two windows (or ``--seconds`` pass).

    python benchmarks/ray_autoscale.py --model runs/serve-bundle [--backend openvino]
        [--precision int8] [--seconds 150] [--out runs/ray-autoscale]

Writes ``ray_autoscale.json``: per window, its end time, requests/s, p50 latency and the
replicas running. (On a 2-core machine the second replica shares the cores: the point is that
the autoscaler adds it under load, not that one machine gets faster.)
"""

from __future__ import annotations

import argparse
import datetime
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from serve_load import free_port, http_load, start_server, test_pattern

from mipd_edge.cli import setup_logging
from mipd_edge.files import write_json
from mipd_edge.machine import device_info, library_versions
from mipd_edge.serve.cluster import APP_NAME
from mipd_edge.tables import render_table

WINDOW_S = 5.0
CLIENTS = 16


def running_replicas(ray, serve) -> int:
    return serve.status().applications[APP_NAME].deployments[APP_NAME].replica_states.get("RUNNING", 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a bundle")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--seconds", type=float, default=150.0, help="the longest the load runs")
    parser.add_argument("--out", default="runs/ray-autoscale")
    args = parser.parse_args()
    setup_logging()
    import ray
    from ray import serve

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    body = test_pattern()
    date = datetime.datetime.now(datetime.timezone.utc)
    port = free_port()
    options = SimpleNamespace(model=args.model, backend=args.backend, precision=args.precision, clients=[CLIENTS],
                              workers=1)
    server = start_server(options, port, 8, ray_replicas=(1, 2))
    windows = []
    try:
        ray.init(address="auto", log_to_driver=False, logging_level="ERROR")  # the instance the server started
        started, scaled_at = time.perf_counter(), None
        while time.perf_counter() - started < args.seconds:
            point = http_load(port, body, CLIENTS, 10**6, WINDOW_S)
            replicas = running_replicas(ray, serve)
            windows.append({"t_s": round(time.perf_counter() - started, 1), "throughput_rps": point["throughput_rps"],
                            "p50_ms": point["p50_ms"], "replicas": replicas})
            print(f"{windows[-1]['t_s']:6.1f} s  {point['throughput_rps']:6.1f} req/s  p50 {point['p50_ms']:7.2f} ms"
                  f"  replicas {replicas}", flush=True)
            if replicas >= 2 and scaled_at is None:
                scaled_at = windows[-1]["t_s"]
            if scaled_at is not None and len([w for w in windows if w["replicas"] >= 2]) >= 3:
                break
        ray.shutdown()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    results = {"provenance": {"command": "python benchmarks/ray_autoscale.py " + " ".join(sys.argv[1:]),
                              "date": date.isoformat(timespec="seconds"), "machine": device_info(),
                              "versions": library_versions()},
               "setup": {"bundle": args.model, "backend": args.backend, "precision": args.precision,
                         "clients": CLIENTS, "window_s": WINDOW_S, "min_replicas": 1, "max_replicas": 2},
               "windows": windows, "scaled_up_after_s": scaled_at}
    write_json(out / "ray_autoscale.json", results)
    rows = [["t s", "req/s", "p50 ms", "replicas"]] + [
        [f"{w['t_s']:.1f}", f"{w['throughput_rps']:.1f}", f"{w['p50_ms']:.2f}", str(w["replicas"])] for w in windows]
    print(render_table(rows))
    print(f"scaled up after {scaled_at} s" if scaled_at is not None else "did not scale up")
    print(out / "ray_autoscale.json")


if __name__ == "__main__":
    main()
