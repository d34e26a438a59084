import json
import subprocess
import sys


def test_quickstart_fast_runs_end_to_end_and_resumes(tmp_path):
    cmd = [sys.executable, "-m", "mipd_edge.cli", "quickstart", "--workdir", str(tmp_path), "--fast"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "frequency prior" in r.stdout and "unseen" in r.stdout
    metrics = json.loads((tmp_path / "baseline" / "metrics.json").read_text())
    assert set(metrics) == {"all", "seen", "rare", "unseen"}
    # the prior never ranks an unseen verb: it has no training image
    assert metrics["unseen"]["top5"]["verb"] == 0.0
    assert 0 < metrics["seen"]["top5"]["verb"] < 100
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0 and again.stderr.count("reusing") == 2
