"""Live situations from a camera or an RTSP stream:

    python examples/camera_stream.py BUNDLE             # camera 0
    python examples/camera_stream.py BUNDLE rtsp://...  # a network stream (or a video file)

Only the newest frame is kept (no growing lag); a camera that is down, at start or later,
is reopened with back-off. Press Ctrl+C to stop: the stream drains and closes live.mp4 as a
playable file (an existing live.mp4 is replaced only with --overwrite).
"""

import argparse

from mipd_edge import MipdEdgeError, Predictor
from mipd_edge.deploy.streams import StreamWriter, open_source, run_stream

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("bundle", help="a bundle folder (mipd-edge export / quantize)")
parser.add_argument("source", nargs="?", default="0", help="a camera index, a video file or an rtsp:// / http:// URL")
parser.add_argument("--save", default="live.mp4", help="the annotated video (mp4)")
parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
parser.add_argument("--overwrite", action="store_true", help="replace an existing --save file")
args = parser.parse_args()

try:
    writer = StreamWriter(save=args.save, overwrite=args.overwrite)  # refuses an existing file before any work
    source = open_source(int(args.source) if args.source.isdigit() else args.source)
    predictor = Predictor(args.bundle, backend="auto")
except MipdEdgeError as error:  # one line, not a traceback
    parser.exit(2, f"{parser.prog}: error: {error}\n")
writer.fps = source.fps or 15
stats = run_stream(predictor, source, writer, max_frames=args.max_frames,
                   on_result=lambda frame, s: print(f"frame {frame.index}: {s}", flush=True))
print(
    f"{stats.frames} frames, {stats.skipped} skipped" + (f", stopped by {stats.stopped_by}" if stats.stopped_by else "")
)
