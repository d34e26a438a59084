"""Live situations from a camera or an RTSP stream:

    python examples/camera_stream.py BUNDLE            # camera 0
    python examples/camera_stream.py BUNDLE rtsp://... # a network stream

Only the newest frame is kept (no growing lag); a camera that is down, at start or later,
is reopened with back-off. Press Ctrl+C to stop: the stream drains and closes live.mp4 as a
playable file (an existing live.mp4 is replaced).
"""

import sys

from mipd_edge import Predictor
from mipd_edge.deploy.stream import StreamWriter, open_source, run_stream

bundle = sys.argv[1]
source = open_source(sys.argv[2] if len(sys.argv) > 2 else 0)
predictor = Predictor(bundle, backend="auto")
stats = run_stream(predictor, source, StreamWriter(save="live.mp4", fps=source.fps or 15, overwrite=True),
                   on_result=lambda frame, s: print(f"frame {frame.index}: {s}", flush=True))
print(
    f"{stats.frames} frames, {stats.skipped} skipped" + (f", stopped by {stats.stopped_by}" if stats.stopped_by else "")
)
