"""On Ray: `serve --ray` (Ray Serve replicas behind Ray's HTTP proxy) and `predict --ray` (Ray
Data workers), each on a local Ray instance the command starts and stops, over loopback, bounded
in time."""

import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
import requests

from helpers import free_port, rounded, wait_until_ready
from mipd_edge import Predictor

pytest.importorskip("ray")
pytest.importorskip("fastapi")


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mipd_edge.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_predict_on_ray_refuses_what_it_cannot_do_before_ray_starts(tiny_bundle, tiny_world, tmp_path):
    """(That it writes the single-process file byte for byte is run as docs/cluster.md shows it,
    by tests/test_docs.py.)"""
    common = ["predict", "--model", str(tiny_bundle), "--source", str(tiny_world / "data" / "images"), "--ray"]
    refused = cli(*common, "--save", str(tmp_path / "drawn"), timeout=60)
    assert refused.returncode == 2 and "does not go with --ray" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    refused = cli(*common, "--ray-workers", "0", timeout=60)
    assert refused.returncode == 2 and "--ray-workers must be at least 1" in refused.stderr
    nowhere = cli(*common, "--ray-address", "auto", timeout=120)  # no cluster runs here
    assert nowhere.returncode == 2 and "cannot reach Ray at auto" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr


def test_a_ray_data_worker_answers_its_batch_as_one_process_does(tiny_bundle, tiny_world, tmp_path):
    """The worker's part of ``predict --ray``, called as Ray Data calls it: a batch of paths in,
    the lines one process writes out, an unreadable file an error of its own."""
    from mipd_edge.deploy.folder import answer_files
    from mipd_edge.serve.cluster import FolderWorker, PredictorSpec

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    paths = [str(p) for p in sorted((tiny_world / "data" / "images").iterdir())[:3]] + [str(broken)]
    out = FolderWorker(PredictorSpec(str(tiny_bundle), "onnxruntime", precision="fp32"))(
        {"index": np.arange(4), "path": np.array(paths, object)})
    with Predictor(tiny_bundle, backend="onnxruntime", precision="fp32") as predictor:
        expected = list(answer_files(predictor, paths))
    assert list(out["index"]) == [0, 1, 2, 3] and list(out["source"]) == paths
    assert list(out["line"]) == [a.line for a in expected] and all(out["line"][:3])
    assert list(out["error"][:3]) == ["", "", ""] and "not a readable image" in out["error"][3]


def test_serve_on_ray_answers_the_same_api_from_two_replicas(tiny_bundle, tiny_world):
    image_path = sorted((tiny_world / "data" / "images").iterdir())[0]
    data = image_path.read_bytes()
    with Predictor(tiny_bundle, backend="onnxruntime", precision="fp32") as predictor:
        expected = predictor(cv2.imread(str(image_path))).to_json()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mipd_edge.cli", "serve", str(tiny_bundle), "--ray", "--port",
                             str(port), "--backend", "onnxruntime", "--precision", "fp32", "--min-replicas", "2",
                             "--max-replicas", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(proc, url, 180)
        for _ in range(4):  # the proxy spreads requests over both replicas: each answers as one process does
            r = requests.post(f"{url}/v1/predict", data=data, headers={"content-type": "image/jpeg"}, timeout=60)
            assert r.status_code == 200 and rounded(r.json()) == rounded(expected)
        files = [(f"f{i}", (f"{i}.jpg", data)) for i in range(3)]
        assert len(requests.post(f"{url}/v1/predict", files=files, timeout=60).json()["results"]) == 3
        bad = requests.post(f"{url}/v1/predict", data=b"not an image", timeout=60)
        assert bad.status_code == 415 and "not an image" in bad.json()["error"]["message"]
        model = requests.get(f"{url}/v1/model", timeout=30).json()
        assert model["backend"] == "onnxruntime" and model["precision"] == "fp32"
        edit = requests.post(f"{url}/v1/vocabulary/verbs/waving", json={"definition": "x"},
                             headers={"Authorization": "Bearer something-long-enough-1234"}, timeout=30)
        assert edit.status_code == 401 and "edits are off" in edit.json()["error"]["message"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0
        out, err = proc.communicate()
        assert f"on Ray Serve at {url}, 2 to 2 replicas" in out
        assert "replicas running 2 (2 to 2)" in err and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
    refused = cli("serve", str(tiny_bundle), "--ray", "--admin-token", "env:HOME", timeout=60)
    assert refused.returncode == 2 and "does not go with --ray" in refused.stderr
