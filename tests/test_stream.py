import json
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from mipd_edge import Predictor
from mipd_edge.data.synthsitu.video import write_demo_video
from mipd_edge.deploy.streams import ImageSource, StreamWriter, VideoSource, open_source, run_stream
from mipd_edge.errors import MipdEdgeError, OutputExistsError, StreamError


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
    got = []
    with pytest.raises(StreamError, match="gave up after 2 reconnection attempts"):  # then the camera is gone
        for frame in source:
            got.append(frame.index)
    assert source.reconnects == 1 and len(attempts) == 4  # the first open, the reconnect, two failed retries
    assert max(got) > 4  # frames kept arriving after the reconnect


class PacedCapture:
    """A live camera: a new frame every ``period`` seconds, numbered in its pixels, forever."""

    def __init__(self, spec, period=0.002):
        self.period, self.produced = period, 0

    def isOpened(self):
        return True

    def read(self):
        time.sleep(self.period)
        self.produced += 1
        return True, np.full((24, 32, 3), self.produced % 256, np.uint8)

    def get(self, prop):
        return 500.0

    def release(self):
        pass


def test_a_slow_consumer_of_a_live_source_sees_only_the_newest_frames():
    cameras = []
    source = VideoSource(0, live=True, open_capture=lambda spec: cameras.append(PacedCapture(spec)) or cameras[-1])
    seen = []
    try:
        for frame in source:
            seen.append((frame.index, time.perf_counter(), cameras[0].produced))
            time.sleep(0.03)  # inference 15x slower than the camera
            if len(seen) == 20:
                break
    finally:
        source.close()
    indexes = [i for i, _, _ in seen]
    assert all(b > a for a, b in zip(indexes, indexes[1:]))  # in order, never a frame twice
    gaps = [b - a for a, b in zip(indexes, indexes[1:])]
    assert min(gaps[1:]) > 1 and sum(gaps) > 5 * len(gaps)  # the frames read while it worked were dropped
    # what it got was fresh: at most the one frame read while it was busy stood between it and the camera
    assert all(produced - (index + 1) <= 2 for index, _, produced in seen[1:])


class OneBadFrame:
    """A source whose third frame is not an image the model can take (a 7-channel array)."""

    def __init__(self, images):
        self.images = images

    def __iter__(self):
        from mipd_edge.deploy.streams import Frame

        for i, image in enumerate(self.images):
            yield Frame(i, np.zeros((32, 32, 7), np.uint8) if i == 2 else image, "test")

    def close(self):
        pass


def test_a_frame_whose_inference_fails_is_skipped_and_counted(tiny_bundle, tiny_world, tmp_path):
    images = [cv2.imread(str(p)) for p in sorted((tiny_world / "data" / "images").iterdir())[:5]]
    p = Predictor(tiny_bundle, backend="onnxruntime")
    stats = run_stream(p, OneBadFrame(images), StreamWriter(json_lines=tmp_path / "r.jsonl"))
    assert stats.skipped == 1 and stats.frames == 4 and stats.to_json()["skipped"] == 1
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == [0, 1, 3, 4]  # the stream went on past it


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
                        "openvino"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "7 frames" in r.stdout and len(frames_of(tmp_path / "s.mp4")) == 7
    folder = tmp_path / "imgs"
    folder.mkdir()
    for path in sorted((tiny_world / "data" / "images").iterdir())[:2]:
        (folder / path.name).write_bytes(path.read_bytes())
    r = subprocess.run([sys.executable, "-m", "mipd_edge.cli", "predict", "--model", str(tiny_bundle), "--source",
                        str(folder), "--save", str(tmp_path / "ann"), "--json", str(tmp_path / "p.jsonl")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list((tmp_path / "ann").glob("*.jpg"))) == 2 and "2 images" in r.stdout
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 2


def test_a_failing_writer_stops_the_stream_instead_of_blocking_it():
    """The writer dies on its first frame while the reader keeps producing: the stream must
    end with the writer's error, not wait forever on a full queue."""
    import numpy as np

    from mipd_edge.deploy.streams import Frame
    from mipd_edge.errors import MipdEdgeError

    class Source:
        def __iter__(self):
            return (Frame(i, np.zeros((8, 8, 3), np.uint8), "fake") for i in range(10_000))

        def close(self):
            pass

    class Predictor:
        timings: dict = {}

        def predict(self, images):
            return ["a result"] * len(images)

    class BrokenWriter:
        def write(self, *args):
            raise OSError("disk full")

        def close(self, keep=True):
            pass

    with pytest.raises(MipdEdgeError, match="disk full"):
        run_stream(Predictor(), Source(), BrokenWriter(), queue_size=1)


def test_a_camera_down_at_start_is_retried(video):
    attempts = []

    def open_capture(spec):
        attempts.append(spec)
        return FlakyCapture(spec, fail_after=None, works=len(attempts) >= 3)  # up on the third try

    source = VideoSource(str(video), live=True, max_retries=5, backoff=0.01, open_capture=open_capture)
    first = next(iter(source))  # (a live source keeps its newest frame: which one depends on timing)
    source.close()
    assert first.image is not None and len(attempts) == 3 and source.status == "ended"


def test_an_error_in_the_reader_thread_ends_the_stream_with_it(video):
    class Exploding(FlakyCapture):
        def read(self):
            raise RuntimeError("driver crashed")

    source = VideoSource(str(video), live=True, backoff=0.01,
                         open_capture=lambda spec: Exploding(spec, fail_after=None, works=True))
    with pytest.raises(StreamError, match="driver crashed"):
        list(source)


def test_the_writer_checks_what_it_writes(tmp_path):
    with pytest.raises(StreamError, match="unknown container"):
        StreamWriter(tmp_path / "out.xyz")
    (tmp_path / "taken.mp4").write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        StreamWriter(tmp_path / "taken.mp4")
    with pytest.raises(OutputExistsError):
        StreamWriter(json_lines=tmp_path / "taken.mp4")
    assert (tmp_path / "taken.mp4").read_bytes() == b"precious"
    writer = StreamWriter(tmp_path / "empty.mp4")
    with pytest.raises(StreamError, match="no video written"):
        writer.close()
    assert not list(tmp_path.glob("*empty*")) and not list(tmp_path.glob(".*"))  # nothing left behind


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="needs /dev/full to fill a disk")
def test_a_full_disk_is_an_error_not_a_success(tiny_bundle, tmp_path):
    from mipd_edge.deploy.streams import Frame

    writer = StreamWriter(json_lines=tmp_path / "r.jsonl")
    writer.json.close()
    writer.json = open("/dev/full", "w", buffering=1)  # every write fails with ENOSPC, as on a full disk
    p = Predictor(tiny_bundle, backend="onnxruntime")
    frames = [Frame(i, np.full((64, 64, 3), 100, np.uint8), "x") for i in range(3)]

    class Source:
        def __iter__(self):
            return iter(frames)

        def close(self):
            pass

    with pytest.raises(StreamError, match="No space left"):
        run_stream(p, Source(), writer)
    assert not (tmp_path / "r.jsonl").exists()


def test_sigterm_finishes_a_playable_video_and_whole_json_lines(tiny_bundle, video, tmp_path):
    """A stream killed politely (SIGTERM, as a service manager stops it) drains its queues and
    closes its files: the mp4 plays every frame it counted and every JSON line parses."""
    import os
    import signal
    import time

    looped = tmp_path / "long.mp4"  # the test video, long enough to still be running when signalled
    frames = frames_of(video)
    out = cv2.VideoWriter(str(looped), cv2.VideoWriter_fourcc(*"mp4v"), 6, frames[0].shape[1::-1])
    loops = 150  # some 2,700 frames: seconds of work even for this tiny model on a fast CPU
    for _ in range(loops):
        for f in frames:
            out.write(f)
    out.release()
    proc = subprocess.Popen([sys.executable, "-m", "mipd_edge.cli", "stream", "--model", str(tiny_bundle),
                             "--source", str(looped), "--save", str(tmp_path / "s.mp4"), "--json",
                             str(tmp_path / "s.jsonl"), "--backend", "onnxruntime"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".s.mp4.*")):
        time.sleep(0.02)  # the video's temporary file appears with the first frame written
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-2000:]
    assert "stopped by SIGTERM" in stdout
    played = len(frames_of(tmp_path / "s.mp4"))
    lines = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert 0 < played < loops * len(frames) and played == len(lines)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_a_missing_source_and_occupied_outputs_fail_from_the_cli(tiny_bundle, tiny_world, video, tmp_path):
    cli = [sys.executable, "-m", "mipd_edge.cli"]
    r = subprocess.run(cli + ["predict", "--model", str(tiny_bundle), "--source", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no such image or folder" in r.stderr
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = sorted((tiny_world / "data" / "images").iterdir())[0]
    (folder / photo.name).write_bytes(photo.read_bytes())
    r = subprocess.run(cli + ["predict", "--model", str(tiny_bundle), "--source", str(folder), "--save", str(folder),
                              "--overwrite"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "replace the originals" in r.stderr
    assert (folder / photo.name).read_bytes() == photo.read_bytes()
    taken = tmp_path / "taken.mp4"
    taken.write_bytes(b"precious")
    for command in (["stream", "--source", str(video), "--save", str(taken)],
                    ["predict", "--source", str(folder), "--json", str(taken)]):
        r = subprocess.run(cli + command + ["--model", str(tiny_bundle)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and "--overwrite" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert taken.read_bytes() == b"precious"
    r = subprocess.run(cli + ["stream", "--model", str(tiny_bundle), "--source", str(video), "--save", str(taken),
                              "--overwrite", "--max-frames", "3", "--backend", "onnxruntime"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(frames_of(taken)) == 3
