"""Many sources through one model: aggregate frames/s and per-source latency for 1, 2, 4 and 8
video files answered as one ``StreamSet`` (a batch per tick) against one ``mipd-edge stream``
process per file, and the memory of 4 sources over 10,000 frames each.

    python benchmarks/multi_stream.py --model runs/serve-bundle [--backend openvino]
        [--precision int8] [--counts 1,2,4,8] [--rss-frames 10000] [--out runs/multi-stream]

The clip is a SynthSitu demo video (``write_demo_video``) of the dataset beside the bundle's
training data (``--data``). A bundle exported with ``--dynamic-batch`` runs each tick as one
batch. The processes run side by side, each timing its own stream (model loading excluded);
their aggregate is their frames over the longest one's seconds. Memory: resident set size,
read from /proc, every 1,000 frames of a 4-source set fed 10,000 frames each from memory.
Writes ``multi_stream.json`` and ``multi_stream.png``.
"""

from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mipd_edge import Predictor
from mipd_edge.cli import setup_logging
from mipd_edge.data.synthsitu.video import write_demo_video
from mipd_edge.deploy.streams import Frame, StreamSet, open_source
from mipd_edge.files import write_json
from mipd_edge.machine import device_info, library_versions
from mipd_edge.tables import render_table

SUMMARY = re.compile(r"^(\d+) frames in ([\d.]+) s")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one_set(predictor, clip: Path, count: int) -> dict[str, Any]:
    streams = StreamSet(predictor)
    for i in range(count):
        streams.add(f"clip{i}", open_source(clip))
    stats = streams.run()
    latency = [s.latency_ms / max(1, s.frames) for s in stats.sources.values()]
    return {"frames": stats.frames, "seconds": stats.seconds, "fps": stats.frames / stats.seconds,
            "mean_latency_ms": float(np.mean(latency))}


def processes(args: argparse.Namespace, clip: Path, count: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "mipd_edge.cli", "stream", "--model", args.model, "--backend", args.backend,
               "--precision", args.precision, "--source", str(clip)]
    running = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
               for _ in range(count)]
    frames, seconds = 0, 0.0
    for proc in running:
        out, _ = proc.communicate(timeout=600)
        match = next(m for m in map(SUMMARY.match, out.splitlines()) if m)
        frames += int(match.group(1))
        seconds = max(seconds, float(match.group(2)))
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds}


def memory(predictor, images: list[np.ndarray], frames: int, sources: int = 4) -> list[dict[str, float]]:
    samples: list[dict[str, float]] = []

    def feed(name: str):
        for i in range(frames):
            yield Frame(i, images[i % len(images)], name)

    def sample(name: str, frame: Frame, answer) -> None:
        if name == "s0" and (frame.index + 1) % 1000 == 0:
            samples.append({"frames": frame.index + 1, "rss_mb": rss_mb()})

    streams = StreamSet(predictor, on_result=sample)
    for i in range(sources):
        streams.add(f"s{i}", feed(f"s{i}"))
    streams.run()
    return samples


def plot(results: dict[str, Any], path: Path) -> None:
    """Aggregate frames/s against the number of sources: one set, and one process each."""
    w, h, pad = 800, 460, 70
    counts = results["counts"]
    top = 1.15 * max(r["fps"] for mode in ("set", "processes") for r in results[mode].values())
    canvas = np.full((h, w, 3), 255, np.uint8)

    def xy(i: int, value: float) -> tuple[int, int]:
        return int(pad + i / max(len(counts) - 1, 1) * (w - 2 * pad)), int(h - pad - value / top * (h - 2 * pad))

    for k, (mode, label, colour) in enumerate((("set", "one StreamSet", (200, 80, 20)),
                                               ("processes", "a process per source", (30, 140, 30)))):
        points = [xy(i, results[mode][str(c)]["fps"]) for i, c in enumerate(counts)]
        for a, b in zip(points, points[1:]):
            cv2.line(canvas, a, b, colour, 2, cv2.LINE_AA)
        for p in points:
            cv2.circle(canvas, p, 4, colour, -1, cv2.LINE_AA)
        cv2.putText(canvas, label, (w - pad - 220, pad + 22 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1,
                    cv2.LINE_AA)
    for i, c in enumerate(counts):
        cv2.putText(canvas, str(c), (xy(i, 0)[0] - 5, h - pad + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                    cv2.LINE_AA)
    cv2.putText(canvas, "sources", (w // 2 - 30, h - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "frames/s, all sources", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), canvas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a bundle (exported with --dynamic-batch for real batches)")
    parser.add_argument("--data", default="runs/quickstart/data", help="the SynthSitu dataset the clip is made of")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--counts", default="1,2,4,8")
    parser.add_argument("--rss-frames", type=int, default=10_000, help="frames per source in the memory run")
    parser.add_argument("--out", default="runs/multi-stream")
    args = parser.parse_args()
    setup_logging()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    date = datetime.datetime.now(datetime.timezone.utc)
    clip = write_demo_video(args.data, out / "clip.mp4", images=24, frames_per_image=25)  # 600 frames
    counts = [int(c) for c in args.counts.split(",")]
    with Predictor(args.model, backend=args.backend, precision=args.precision) as predictor:
        one_set(predictor, clip, 1)  # warm-up
        batched = {str(c): one_set(predictor, clip, c) for c in counts}
        capture = cv2.VideoCapture(str(clip))
        images = [capture.read()[1] for _ in range(60)]
        capture.release()
        rss = memory(predictor, images, args.rss_frames)
    separate = {str(c): processes(args, clip, c) for c in counts}
    settled = [s["rss_mb"] for s in rss[1:]]  # after the first 1,000 frames
    results = {"provenance": {"command": "python benchmarks/multi_stream.py " + " ".join(sys.argv[1:]),
                              "date": date.isoformat(timespec="seconds"), "machine": device_info(),
                              "versions": library_versions()},
               "setup": {"bundle": args.model, "backend": args.backend, "precision": args.precision,
                         "clip_frames": batched[str(counts[0])]["frames"] // counts[0], "rss_frames": args.rss_frames},
               "counts": counts, "set": batched, "processes": separate, "rss": rss,
               "rss_growth": (max(settled) - min(settled)) / min(settled) if settled else None}
    write_json(out / "multi_stream.json", results)
    plot(results, out / "multi_stream.png")
    rows = [["sources", "set frames/s", "set latency ms", "processes frames/s"]]
    for c in counts:
        rows.append([str(c), f"{batched[str(c)]['fps']:.1f}", f"{batched[str(c)]['mean_latency_ms']:.1f}",
                     f"{separate[str(c)]['fps']:.1f}"])
    print(render_table(rows))
    print("RSS MB every 1,000 frames (4 sources):", [round(s["rss_mb"]) for s in rss])
    print(f"growth after the first 1,000 frames: {100 * results['rss_growth']:.1f}%")
    print(out / "multi_stream.json")


if __name__ == "__main__":
    main()
