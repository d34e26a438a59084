import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from mipd_edge.machine import bf16_capable

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_runs_every_stage_and_resumes(tmp_path, cache_dir):
    cmd = [sys.executable, "-m", "mipd_edge.cli", "quickstart", "--workdir", str(tmp_path), "--preset", "quick"]
    # killed with SIGKILL once the teacher has its first checkpoint: the next run resumes it
    killed = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint, deadline = tmp_path / "teacher" / "checkpoints" / "last.safetensors", time.time() + 300
    while time.time() < deadline and killed.poll() is None and not checkpoint.is_file():
        time.sleep(0.01)
    killed.kill()
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL and checkpoint.is_file()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stage teacher: resuming from" in r.stderr and " after epoch " in r.stderr
    for noise in ("is out-of-range for weight", "No CUDA runtime is found", "will not be used"):
        assert noise not in r.stderr  # third-party chatter that is not the user's concern
    for name in ("prior", "none", "mipd", "teacher"):
        assert name in r.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"prior", "none", "mipd", "teacher"}
    assert all(set(m) == {"all", "seen", "rare", "unseen"} for m in results.values())
    assert results["prior"]["unseen"]["top5"]["verb"] == 0.0  # the prior never ranks a verb it has not seen
    for d in ("data", "teacher", "student-none", "student-mipd"):
        assert (tmp_path / d).is_dir()
    assert (tmp_path / "rationales.jsonl").stat().st_size > 0
    import cv2

    video = cv2.VideoCapture(str(tmp_path / "demo.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) > 10 and video.read()[0]
    assert json.loads((tmp_path / "bundle-int8" / "bundle.json").read_text())["precision"] == "int8"
    bench = json.loads((tmp_path / "benchmark" / "results.json").read_text())
    ran = {(row["model"], row["backend"], row["precision"]) for row in bench["rows"] if row["status"] == "ok"}
    assert {("student", b, p) for b in ("onnxruntime", "openvino") for p in ("fp32", "int8")} <= ran
    assert ("student", "torch", "fp32") in ran
    assert (("student", "openvino", "bf16") in ran) == bf16_capable()  # a row where the CPU computes in bf16
    assert (tmp_path / "benchmark" / "latency_vs_accuracy.png").stat().st_size > 10_000
    frames = sorted((tmp_path / "frames").glob("*.png"))
    assert len(frames) >= 3 and cv2.imread(str(frames[0])).shape[0] >= 3 * 96 * 0.5
    report = (tmp_path / "report.md").read_text()
    for link in ["benchmark/latency_vs_accuracy.png", "demo.mp4"] + [f"frames/{f.name}" for f in frames]:
        assert link in report and (tmp_path / link).is_file()
    assert "| student | openvino | int8 | 1 |" in report and "student, MIPD" in report
    assert f"mipd-edge serve {tmp_path / 'bundle-int8'} --port 8000" in report  # how to serve its bundle
    record = json.loads((tmp_path / "quickstart.json").read_text())  # the run's numbers with their provenance
    assert record["command"] == f"mipd-edge quickstart --workdir {tmp_path} --preset quick"
    assert record["machine"]["cpu"] and "torch" in record["versions"] and record["seconds"] > 0
    assert record["accuracy"] == results and record["benchmark"]["rows"] == bench["rows"]
    # docs/pictures.py: a frame recognised correctly (unseen verbs first), the demo as a GIF, the plot
    pictures = [sys.executable, "docs/pictures.py", str(tmp_path), "--out", str(tmp_path / "pictures")]
    shown = subprocess.run(pictures, capture_output=True, text=True, timeout=300, cwd=ROOT)
    right = [f for f in json.loads((tmp_path / ".stages" / "frames.json").read_text())["result"]
             if f["predicted"] == f["gold"]]
    if right:
        assert shown.returncode == 0, shown.stderr
        best = min(right, key=lambda f: ("unseen", "rare", "seen").index(f["split"]))
        assert f"{best['split']} verb {best['gold']!r}, recognised" in shown.stdout
        gif = Image.open(tmp_path / "pictures" / "quickstart-demo.gif")
        assert gif.n_frames > 5 and gif.width == 256
        again_shown = subprocess.run(pictures, capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert again_shown.returncode == 2 and "--overwrite" in again_shown.stderr
    else:  # the tiny students may recognise nothing: then no picture claims they did
        assert shown.returncode == 2 and "recognised correctly" in shown.stderr
        assert not (tmp_path / "pictures").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0
    reused, ran = again.stderr.count("reusing the finished run"), again.stderr.count(": running")
    assert reused >= 14 and ran == 0, again.stderr[-3000:]  # nothing is made twice
    # the teacher never saw a student image: its own sample, recorded by content
    from mipd_edge.train.seen import check_unseen

    assert check_unseen(tmp_path / "teacher", tmp_path / "data") == 160 + 48  # its train and dev images
