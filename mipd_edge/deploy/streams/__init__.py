"""Cameras, video files, RTSP / HTTP streams and image folders through a Predictor, one or many
at once: ``sources`` (where frames come from), ``engine`` (``StreamSet``, ``run_stream``),
``writers`` (overlays, H.264 video, JSON lines).

    from mipd_edge.deploy.streams import StreamSet, StreamWriter, open_source
"""

from .engine import SourceStats, StreamSet, StreamStats, run_stream
from .sources import Frame, ImageSource, SourceEnded, VideoSource, open_source
from .writers import StreamWriter, VideoEncoder

__all__ = ["Frame", "ImageSource", "SourceEnded", "SourceStats", "StreamSet", "StreamStats", "StreamWriter",
           "VideoEncoder", "VideoSource", "open_source", "run_stream"]
