import json
import subprocess
import sys


def test_quickstart_runs_every_stage_and_resumes(tmp_path, cache_dir):
    cmd = [sys.executable, "-m", "mipd_edge.cli", "quickstart", "--workdir", str(tmp_path), "--preset", "quick"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
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
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0
    assert again.stderr.count("reusing the finished run") >= 10  # nothing is trained or exported twice
