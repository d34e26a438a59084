import json
import signal
import subprocess
import sys
import time

import pytest


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
    assert (tmp_path / "benchmark" / "latency_vs_accuracy.png").stat().st_size > 10_000
    frames = sorted((tmp_path / "frames").glob("*.png"))
    assert len(frames) >= 3 and cv2.imread(str(frames[0])).shape[0] >= 3 * 96 * 0.5
    report = (tmp_path / "report.md").read_text()
    for link in ["benchmark/latency_vs_accuracy.png", "demo.mp4"] + [f"frames/{f.name}" for f in frames]:
        assert link in report and (tmp_path / link).is_file()
    assert "| student | openvino | int8 | 1 |" in report and "student, MIPD" in report
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0
    reused, ran = again.stderr.count("reusing the finished run"), again.stderr.count(": running")
    assert reused >= 14 and ran == 0, again.stderr[-3000:]  # nothing is made twice
    # the teacher never saw a student image: its own sample, recorded by content
    from mipd_edge.train.seen import check_unseen

    assert check_unseen(tmp_path / "teacher", tmp_path / "data") == 160 + 48  # its train and dev images
