"""Several sources in one stream: real video files and a camera served over HTTP on loopback
that stalls, drops and comes back; bounded in frames and time."""

import json
import subprocess
import sys
import threading
import time

import cv2
import pytest

from helpers import MjpegCamera
from mipd_edge import Predictor
from mipd_edge.data.synthsitu.video import write_demo_video
from mipd_edge.deploy.streams import StreamSet, StreamWriter, VideoSource, open_source
from mipd_edge.deploy.streams.sources import named_sources
from mipd_edge.errors import MipdEdgeError


@pytest.fixture(scope="module")
def clips(tiny_world, tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return [write_demo_video(tiny_world / "data", folder / f"{name}.mp4", images=4, frames_per_image=3, fps=6)
            for name in ("door", "yard")]


@pytest.fixture(scope="module")
def camera_images(tiny_world):
    return [cv2.imread(str(p)) for p in sorted((tiny_world / "data" / "images").iterdir())[:6]]


class Counting:
    """A real Predictor that records the size of every batch it is given."""

    def __init__(self, predictor):
        self.predictor, self.batches = predictor, []

    def __getattr__(self, name):
        return getattr(self.predictor, name)

    def predict(self, images):
        self.batches.append(len(images))
        return self.predictor.predict(images)


def codec_of(path) -> str:
    import av

    with av.open(str(path)) as container:
        return container.streams.video[0].codec_context.name


def frames_in(path) -> int:
    capture = cv2.VideoCapture(str(path))
    n = 0
    while capture.read()[0]:
        n += 1
    capture.release()
    return n


def test_files_and_a_camera_that_stalls_drops_and_comes_back(tiny_bundle, clips, camera_images, tmp_path):
    camera = MjpegCamera(camera_images, fps=20)
    predictor = Counting(Predictor(tiny_bundle, backend="onnxruntime", precision="fp32"))
    streams = StreamSet(predictor)
    try:
        for clip in clips:
            streams.add(clip.stem, open_source(clip), StreamWriter(tmp_path / f"{clip.stem}.mp4",
                                                                   tmp_path / f"{clip.stem}.jsonl", fps=6))
        live = VideoSource(camera.url, max_retries=20, backoff=0.1, max_backoff=0.3, timeout_s=0.5)
        streams.add("camera", live, StreamWriter(tmp_path / "camera.mp4", tmp_path / "camera.jsonl", fps=20))
        stop = threading.Event()
        seen = {}

        def script():  # serve, stall past the read timeout, go down, come back, then stop the stream
            for mode, seconds in (("serve", 1.5), ("stall", 1.5), ("down", 1.0), ("serve", 2.0)):
                camera.mode = mode
                time.sleep(seconds)
                seen[mode] = streams.stats.sources["camera"].frames
            stop.set()
        driver = threading.Thread(target=script)
        driver.start()
        stats = streams.run(stop)
        driver.join()
    finally:
        camera.close()
    files, cam = [stats.sources[c.stem] for c in clips], stats.sources["camera"]
    assert [s.status for s in files] == ["ended", "ended"] and [s.frames for s in files] == [12, 12]
    assert cam.status == "stopped" and cam.reconnects >= 1 and camera.connections >= 2
    assert seen["stall"] > 0 and seen["serve"] > seen["down"]  # frames before the stall and after the return
    assert max(predictor.batches) >= 2  # sources answered together, in one call
    for name in ("door", "yard", "camera"):
        lines = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        assert len(lines) == stats.sources[name].frames and all(line["verbs"] for line in lines)
        assert frames_in(tmp_path / f"{name}.mp4") == len(lines)
        assert codec_of(tmp_path / f"{name}.mp4") == "h264"  # a browser plays it
    assert lines[0]["source"] == camera.url


def test_a_source_added_and_removed_while_running(tiny_bundle, clips, camera_images, tmp_path):
    camera = MjpegCamera(camera_images, fps=30)
    predictor = Predictor(tiny_bundle, backend="onnxruntime", precision="fp32")
    answers = []
    streams = StreamSet(predictor, on_result=lambda name, frame, answer: answers.append(name))
    try:
        streams.add("camera", VideoSource(camera.url, timeout_s=2), None)
        with pytest.raises(MipdEdgeError, match="already"):
            streams.add("camera", VideoSource(camera.url, timeout_s=2), None)

        def script():
            time.sleep(1.0)
            streams.add("door", open_source(clips[0]), StreamWriter(json_lines=tmp_path / "door.jsonl"))
            while streams.stats.sources["door"].status != "ended":
                time.sleep(0.05)
            streams.remove("camera")
        driver = threading.Thread(target=script)
        driver.start()
        stats = streams.run()  # ends by itself: the file ended, the camera was removed
        driver.join()
    finally:
        camera.close()
    assert stats.sources["door"].frames == 12 and stats.sources["camera"].status == "stopped"
    assert answers.index("door") > answers.index("camera")  # it joined a running stream
    assert len((tmp_path / "door.jsonl").read_text().splitlines()) == 12


def test_the_cli_streams_several_sources_and_says_which_gave_up(tiny_bundle, clips, tmp_path):
    listing = tmp_path / "sources.txt"
    listing.write_text(f"# two files and a camera that is not there\n{clips[0]}\nback={clips[1]}\n"
                       "gone=http://127.0.0.1:9/none.mjpg\n")
    r = subprocess.run([sys.executable, "-m", "mipd_edge.cli", "stream", "--model", str(tiny_bundle), "--backend",
                        "onnxruntime", "--sources", str(listing), "--retries", "1", "--save", str(tmp_path / "videos"),
                        "--json", str(tmp_path / "answers")], capture_output=True, text=True, timeout=240)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("mipd-edge: error: gone: video source http://127.0.0.1:9/none.mjpg")
    assert "door: ended, 12 frames" in r.stdout and "back: ended, 12 frames" in r.stdout
    assert "gone: gave up" in r.stdout
    for name in ("door", "back"):  # the others finished whole
        assert frames_in(tmp_path / "videos" / f"{name}.mp4") == 12
        assert len((tmp_path / "answers" / f"{name}.jsonl").read_text().splitlines()) == 12
    assert not (tmp_path / "videos" / "gone.mp4").exists()


def test_sources_are_named_from_what_they_are():
    assert named_sources(["0", "clips/door.mp4", "rtsp://cam/s?channel=1", "yard=rtsp://cam/2", "door.mp4"]) == {
        "camera0": "0", "door": "clips/door.mp4", "stream1": "rtsp://cam/s?channel=1", "yard": "rtsp://cam/2",
        "door-2": "door.mp4"}


def test_video_without_pyav_is_mp4v_with_a_warning(tiny_bundle, clips, tmp_path, monkeypatch, caplog):
    from mipd_edge.deploy.streams import writers

    monkeypatch.setattr(writers, "h264_encoder", lambda: None)
    predictor = Predictor(tiny_bundle, backend="onnxruntime", precision="fp32")
    streams = StreamSet(predictor)
    streams.add("door", open_source(clips[0]), StreamWriter(tmp_path / "door.mp4"))
    streams.run()
    assert codec_of(tmp_path / "door.mp4") == "mpeg4" and frames_in(tmp_path / "door.mp4") == 12
    assert "browsers do not play" in caplog.text
