import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mipd_edge import Predictor
from mipd_edge.data.synthsitu.video import write_demo_video
from mipd_edge.errors import MipdEdgeError
from mipd_edge.stream import ImageSource, StreamWriter, VideoSource, open_source, run_stream


@pytest.fixture(scope="module")
def video(tiny_world, tmp_path_factory):
    return write_demo_video(tiny_world / "data", tmp_path_factory.mktemp("video") / "in.mp4", images=6,
                            frames_per_image=3, fps=6)


def frames_of(path):
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return out
        out.append(frame)


def test_video_file_streams_end_to_end_with_overlays(tiny_bundle, video, tmp_path):
    p = Predictor(tiny_bundle, backend="onnxruntime")
    source = open_source(video)
    assert isinstance(source, VideoSource) and not source.live
    stats = run_stream(p, source, StreamWriter(tmp_path / "out.mp4", tmp_path / "out.jsonl", fps=source.fps))
    inputs, outputs = frames_of(video), frames_of(tmp_path / "out.mp4")
    assert stats.frames == len(inputs) == len(outputs) == 18 and stats.skipped == 0
    assert np.abs(outputs[0].astype(int) - inputs[0].astype(int)).mean() > 1.0  # overlays drawn
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(18)) and all(line["verbs"] for line in lines)
    assert set(stats.to_json()["mean_ms"]) == {"read_wait", "inference", "draw_write"}


class FlakyCapture:
    """A real video capture that drops out after a few frames, the way a network camera does."""

    opened = 0

    def __init__(self, path, fail_after=None, works=True):
        self.cap, self.fail_after, self.reads, self.works = cv2.VideoCapture(str(path)), fail_after, 0, works

    def isOpened(self):
        return self.works and self.cap.isOpened()

    def read(self):
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            return False, None
        return self.cap.read()

    def get(self, prop):
        return self.cap.get(prop)

    def release(self):
        self.cap.release()


def test_live_source_reconnects_and_keeps_only_the_newest_frame(video):
    attempts = []

    def open_capture(spec):
        attempts.append(spec)
        n = len(attempts)
        # 1st: 4 frames then drops; 2nd: the whole video; later: the camera is gone
        return FlakyCapture(spec, fail_after=4 if n == 1 else None, works=n <= 2)

    source = VideoSource(str(video), live=True, max_retries=2, backoff=0.01, open_capture=open_capture)
    assert source.frames.maxsize == 1  # no backlog can build up
    got = [f.index for f in source]
    assert source.reconnects == 1 and len(attempts) >= 3
    assert got and got == sorted(got)


def test_image_folder_skips_unreadable_files(tiny_bundle, tiny_world, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    images = sorted((tiny_world / "data" / "images").iterdir())[:3]
    for path in images:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "zz_broken.jpg").write_bytes(b"\xff\xd8 not really")
    p = Predictor(tiny_bundle, backend="onnxruntime")
    stats = run_stream(p, ImageSource(folder), StreamWriter(json_lines=tmp_path / "r.jsonl"), max_frames=10)
    assert stats.frames == 3
    with pytest.raises(MipdEdgeError, match="no such source"):
        open_source(tmp_path / "nothing.mp4")
    with pytest.raises(MipdEdgeError, match="cannot open"):
        VideoSource(str(tmp_path / "imgs" / "zz_broken.jpg"), live=False)


def test_predict_and_stream_cli(tiny_bundle, tiny_world, video, tmp_path):
    r = subprocess.run([sys.executable, "-m", "mipd_edge.cli", "stream", "--model", str(tiny_bundle), "--source",
                        str(video), "--save", str(tmp_path / "s.mp4"), "--max-frames", "7", "--backend",
                        "openvino"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "7 frames" in r.stdout and len(frames_of(tmp_path / "s.mp4")) == 7
    folder = tmp_path / "imgs"
    folder.mkdir()
    for path in sorted((tiny_world / "data" / "images").iterdir())[:2]:
        (folder / path.name).write_bytes(path.read_bytes())
    r = subprocess.run([sys.executable, "-m", "mipd_edge.cli", "predict", "--model", str(tiny_bundle), "--source",
                        str(folder), "--save", str(tmp_path / "ann"), "--json", str(tmp_path / "p.jsonl")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list((tmp_path / "ann").glob("*.jpg"))) == 2 and "2 images" in r.stdout
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 2


def test_a_failing_writer_stops_the_stream_instead_of_blocking_it():
    """The writer dies on its first frame while the reader keeps producing: the stream must
    end with the writer's error, not wait forever on a full queue."""
    import numpy as np

    from mipd_edge.errors import MipdEdgeError
    from mipd_edge.stream import Frame

    class Source:
        def __iter__(self):
            return (Frame(i, np.zeros((8, 8, 3), np.uint8), "fake") for i in range(10_000))

        def close(self):
            pass

    class Predictor:
        timings: dict = {}

        def __call__(self, image):
            return "a result"

    class BrokenWriter:
        def write(self, *args):
            raise OSError("disk full")

        def close(self):
            pass

    with pytest.raises(MipdEdgeError, match="disk full"):
        run_stream(Predictor(), Source(), BrokenWriter(), queue_size=1)
