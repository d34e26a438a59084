"""Annotate a video file: python examples/video_file.py BUNDLE VIDEO [OUT.mp4]"""

import sys

from mipd_edge import Predictor
from mipd_edge.deploy.stream import StreamWriter, open_source, run_stream

bundle, video = sys.argv[1], sys.argv[2]
out = sys.argv[3] if len(sys.argv) > 3 else "annotated.mp4"
predictor = Predictor(bundle)
source = open_source(video)  # a file is read frame by frame, never dropped
# refuses to replace an existing OUT (pass overwrite=True to StreamWriter to allow it)
stats = run_stream(predictor, source, StreamWriter(save=out, json_lines=out + ".jsonl", fps=source.fps))
print(f"{stats.frames} frames at {stats.fps:.1f} FPS -> {out}")
