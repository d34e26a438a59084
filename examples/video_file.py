"""Annotate a video file:

    python examples/video_file.py BUNDLE VIDEO [--out annotated.mp4]

Writes the annotated video and its results as JSON lines (OUT.jsonl) beside it; an
existing OUT is never replaced.
"""

import argparse

from mipd_edge import Predictor
from mipd_edge.deploy.stream import StreamWriter, open_source, run_stream

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("bundle", help="a bundle folder (mipd-edge export / quantize)")
parser.add_argument("video", help="a video file")
parser.add_argument("--out", default="annotated.mp4", help="the annotated video (mp4)")
args = parser.parse_args()

predictor = Predictor(args.bundle)
source = open_source(args.video)  # a file is read frame by frame, never dropped
# refuses to replace an existing OUT (pass overwrite=True to StreamWriter to allow it)
stats = run_stream(predictor, source, StreamWriter(save=args.out, json_lines=args.out + ".jsonl", fps=source.fps))
print(f"{stats.frames} frames at {stats.fps:.1f} FPS -> {args.out}")
