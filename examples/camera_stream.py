"""Live situations from a camera or an RTSP stream:

    python examples/camera_stream.py BUNDLE            # camera 0
    python examples/camera_stream.py BUNDLE rtsp://... # a network stream

Only the newest frame is kept (no growing lag); a dropped stream is reopened with back-off.
Press Ctrl+C to stop; the annotated video is saved as live.mp4.
"""

import sys

from mipd_edge import Predictor
from mipd_edge.stream import StreamWriter, open_source, run_stream

bundle = sys.argv[1]
source = open_source(sys.argv[2] if len(sys.argv) > 2 else 0)
predictor = Predictor(bundle, backend="auto")
try:
    run_stream(predictor, source, StreamWriter(save="live.mp4", fps=source.fps or 15),
               on_result=lambda frame, s: print(f"frame {frame.index}: {s}", flush=True))
except KeyboardInterrupt:
    source.close()
