"""The documentation's pictures, from a finished quickstart run:

    python docs/pictures.py runs/quickstart [--out docs/images] [--overwrite]

writes ``quickstart-frame.jpg`` (an annotated test image the INT8 bundle recognised correctly,
preferring an unseen verb, then a rare one), ``quickstart-demo.gif`` (the streamed demo video)
and ``quickstart-latency-vs-accuracy.png`` (the benchmark's plot).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
from PIL import Image

from mipd_edge.errors import MipdEdgeError, OutputExistsError

SPLIT_ORDER = ("unseen", "rare", "seen")  # the frame that shows the most of open vocabulary comes first


def recognised_frame(workdir: Path) -> dict:
    """The quickstart's annotated frame whose predicted verb is the true one, unseen verbs first."""
    frames = json.loads((workdir / ".stages" / "frames.json").read_text())["result"]
    right = [f for f in frames if f["predicted"] == f["gold"]]
    if not right:
        raise MipdEdgeError(f"no frame of {workdir / 'frames'} was recognised correctly")
    return min(right, key=lambda f: SPLIT_ORDER.index(f["split"]))


def video_gif(video: Path, out: Path, width: int = 256, every: int = 3, max_frames: int = 40) -> int:
    """Every ``every``-th frame of ``video``, ``width`` pixels wide, as a looping GIF; returns its frame count."""
    capture, frames, i = cv2.VideoCapture(str(video)), [], 0
    fps = capture.get(cv2.CAP_PROP_FPS) or 10
    while len(frames) < max_frames:
        ok, frame = capture.read()
        if not ok:
            break
        if i % every == 0:
            h, w = frame.shape[:2]
            small = cv2.resize(frame, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)
            frames.append(Image.fromarray(cv2.cvtColor(small, cv2.COLOR_BGR2RGB)))
        i += 1
    capture.release()
    if not frames:
        raise MipdEdgeError(f"{video} has no frames")
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=round(1000 * every / fps), loop=0,
                   optimize=True)
    return len(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", type=Path, help="a finished `mipd-edge quickstart --workdir` folder")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images")
    parser.add_argument("--overwrite", action="store_true", help="replace pictures that exist")
    args = parser.parse_args()
    targets = {name: args.out / name for name in
               ("quickstart-frame.jpg", "quickstart-demo.gif", "quickstart-latency-vs-accuracy.png")}
    try:
        for path in targets.values():
            if path.exists() and not args.overwrite:
                raise OutputExistsError(f"{path} already exists; pass --overwrite to replace it")
        frame = recognised_frame(args.workdir)
        image = cv2.imread(str(args.workdir / "frames" / frame["file"]))
        args.out.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(targets["quickstart-frame.jpg"]), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        count = video_gif(args.workdir / "demo.mp4", targets["quickstart-demo.gif"])
        shutil.copyfile(args.workdir / "benchmark" / "latency_vs_accuracy.png",
                        targets["quickstart-latency-vs-accuracy.png"])
    except (MipdEdgeError, OSError, KeyError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"frame: {frame['split']} verb {frame['gold']!r}, recognised; demo: {count} frames; written to {args.out}")


if __name__ == "__main__":
    main()
