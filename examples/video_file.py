"""Annotate a video file:

    python examples/video_file.py BUNDLE VIDEO [--out annotated.mp4]

Writes the annotated video and its results as JSON lines (OUT.jsonl) beside it; an
existing OUT is never replaced.
"""

import argparse

from mipd_edge import MipdEdgeError, Predictor
from mipd_edge.deploy.streams import StreamWriter, open_source, run_stream

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("bundle", help="a bundle folder (mipd-edge export / quantize)")
parser.add_argument("video", help="a video file")
parser.add_argument("--out", default="annotated.mp4", help="the annotated video (mp4)")
args = parser.parse_args()

try:
    # refuses to replace an existing OUT before any work (overwrite=True would allow it)
    writer = StreamWriter(save=args.out, json_lines=args.out + ".jsonl")
    predictor = Predictor(args.bundle)
    source = open_source(args.video)  # a file is read frame by frame, never dropped
except MipdEdgeError as error:  # one line, not a traceback
    parser.exit(2, f"{parser.prog}: error: {error}\n")
writer.fps = source.fps or writer.fps
stats = run_stream(predictor, source, writer)
print(f"{stats.frames} frames at {stats.fps:.1f} FPS -> {args.out}")
