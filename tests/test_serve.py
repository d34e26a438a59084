"""`mipd-edge serve`: real HTTP over real loopback sockets, bounded in requests and time."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from helpers import free_port, rounded, wait_until_ready
from mipd_edge import Predictor
from mipd_edge.config import ServeConfig
from mipd_edge.errors import MipdEdgeError
from mipd_edge.serve import BatchQueue, BatchSettings, QueueFull, read_admin_token

pytest.importorskip("fastapi")
TOKEN = "a-long-enough-admin-token-0123456789"


class Running:
    """An app on a loopback port, in a thread of this process, stopped at exit."""

    def __init__(self, predictor, cfg: ServeConfig, token=None):
        import uvicorn

        from mipd_edge.serve.app import create_app

        self.cfg = cfg = ServeConfig(**{**cfg.__dict__, "port": free_port()})
        self.server = uvicorn.Server(uvicorn.Config(create_app(predictor, cfg, token), host="127.0.0.1",
                                                    port=cfg.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{cfg.port}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


class Slow:
    """A real Predictor whose batches take ``seconds`` longer: lets a test fill the queue.
    It counts the images it ran."""

    def __init__(self, predictor, seconds: float):
        self.predictor, self.seconds, self.ran = predictor, seconds, []

    def __getattr__(self, name):
        return getattr(self.predictor, name)

    def predict(self, images):
        time.sleep(self.seconds)
        self.ran.append(len(images))
        return self.predictor.predict(images)


@pytest.fixture(scope="module")
def predictor(tiny_bundle):
    with Predictor(tiny_bundle, backend="onnxruntime", precision="fp32") as p:
        yield p


@pytest.fixture(scope="module")
def jpeg(tiny_world):
    image = cv2.imread(str(sorted((tiny_world / "data" / "images").iterdir())[0]))
    return image, cv2.imencode(".jpg", image)[1].tobytes()


def test_predict_answers_what_the_python_api_answers(predictor, jpeg):
    image, data = jpeg
    expected = predictor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)).to_json()
    with Running(predictor, ServeConfig()) as server:
        assert requests.get(f"{server.url}/health", timeout=10).json() == {"status": "ok"}
        assert requests.get(f"{server.url}/ready", timeout=10).json() == {"ready": True}
        one = requests.post(f"{server.url}/v1/predict", data=data, headers={"content-type": "image/jpeg"}, timeout=30)
        assert one.status_code == 200 and one.json() == json.loads(json.dumps(expected))
        png = cv2.imencode(".png", image)[1].tobytes()
        several = requests.post(f"{server.url}/v1/predict", files=[("a", ("a.jpg", data)), ("b", ("b.png", png))],
                                timeout=30)
        assert several.status_code == 200 and len(several.json()["results"]) == 2
        assert rounded(several.json()["results"][0]) == rounded(one.json())
        model = requests.get(f"{server.url}/v1/model", timeout=10).json()
        assert (model["task"], model["backend"], model["precision"]) == ("gsr", "onnxruntime", "fp32")
        assert model["verbs"] == len(predictor.vocabulary.verbs) and len(model["bundle_sha256"]) == 64
        vocabulary = requests.get(f"{server.url}/v1/vocabulary", timeout=10).json()
        assert set(vocabulary["verbs"]) == set(predictor.vocabulary.verbs)
        assert requests.get(f"{server.url}/openapi.json", timeout=10).json()["paths"]["/v1/predict"]
        assert requests.get(f"{server.url}/docs", timeout=10).status_code == 200
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert 'mipd_edge_requests_total{route="/v1/predict",status="200"} 2.0' in metrics
    for name in ("mipd_edge_request_seconds_bucket", "mipd_edge_batch_size_bucket", "mipd_edge_queue_depth",
                 'mipd_edge_model_info{backend="onnxruntime"'):
        assert name in metrics


def test_bad_input_is_a_4xx_with_the_errors_message(predictor, jpeg):
    _, data = jpeg
    with Running(predictor, ServeConfig(max_body_mb=0.05)) as server:
        cases = [(b"", 415, "empty"), (b"%PDF-1.7 not an image", 415, "not an image mipd-edge reads"),
                 (b"GIF89a" + bytes(100), 415, "JPEG, PNG"), (data[:200], 400, "not a readable image"),
                 (b"\xff\xd8\xff" + bytes(60_000), 413, "--max-body-mb")]
        for body, status, message in cases:
            r = requests.post(f"{server.url}/v1/predict", data=body, timeout=30)
            assert r.status_code == status and message in r.json()["error"]["message"], (status, r.text)
            assert "Traceback" not in r.text
        r = requests.post(f"{server.url}/v1/predict", files=[("note", ("n.txt", b"hello"))], timeout=30)
        assert r.status_code == 415
        r = requests.post(f"{server.url}/v1/predict", data=b"x", headers={"content-type": "multipart/form-data"},
                          timeout=30)
        assert 400 <= r.status_code < 500 and "Traceback" not in r.text
        assert requests.get(f"{server.url}/v1/nothing", timeout=10).status_code == 404
        assert requests.get(f"{server.url}/v1/predict", timeout=10).status_code == 405
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert 'mipd_edge_errors_total{type="UnsupportedImage"} 4.0' in metrics
    assert 'mipd_edge_errors_total{type="BodyTooLarge"} 1.0' in metrics


def test_vocabulary_edits_need_the_admin_token(tiny_bundle, jpeg):
    with Predictor(tiny_bundle, backend="onnxruntime", precision="fp32") as predictor:
        verb = predictor.vocabulary.verbs[0]
        with Running(predictor, ServeConfig()) as server:  # no token: edits are off
            r = requests.delete(f"{server.url}/v1/vocabulary/verbs/{verb}", timeout=10)
            assert r.status_code == 401 and "--admin-token" in r.json()["error"]["message"]
        with Running(predictor, ServeConfig(), TOKEN) as server:
            url = f"{server.url}/v1/vocabulary"
            for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
                assert requests.delete(f"{url}/verbs/{verb}", headers=headers, timeout=10).status_code == 401
            assert verb in predictor.vocabulary.verbs
            auth = {"authorization": f"Bearer {TOKEN}"}
            assert requests.delete(f"{url}/verbs/{verb}", headers=auth, timeout=10).json() == {"removed": verb}
            assert verb not in requests.get(url, timeout=10).json()["verbs"]
            r = requests.delete(f"{url}/verbs/{verb}", headers=auth, timeout=10)
            assert r.status_code == 404 and verb in r.json()["error"]["message"]
            r = requests.post(f"{url}/nouns/n-test", headers=auth, json=["not", "an object"], timeout=10)
            assert r.status_code == 400 and "JSON object" in r.json()["error"]["message"]
            r = requests.post(f"{url}/verbs/levitating-xyz", headers=auth, json={"definition": "juggle", "roles": []},
                              timeout=10)
            assert r.status_code == 400 and "1 to 6 roles" in r.json()["error"]["message"]


def test_a_full_queue_answers_503_and_a_cancelled_request_frees_its_slot(predictor, jpeg):
    _, data = jpeg
    slow = Slow(predictor, 2.0)
    with Running(slow, ServeConfig(max_queue=2, max_batch=1, workers=1)) as server:
        url = f"{server.url}/v1/predict"
        with ThreadPoolExecutor(4) as pool:
            first = pool.submit(requests.post, url, data=data, timeout=30)  # runs for two seconds
            time.sleep(0.3)
            gone = pool.submit(requests.post, url, data=data, timeout=0.3)  # waits, then its client gives up
            time.sleep(0.1)
            full = requests.post(url, data=data, timeout=30)  # both slots taken
            assert full.status_code == 503 and full.headers["retry-after"] == "1"
            assert "queue slots are taken" in full.json()["error"]["message"]
            with pytest.raises(requests.exceptions.Timeout):
                gone.result()
            time.sleep(0.5)  # the server notices the closed connection and frees the slot
            late = requests.post(url, data=data, timeout=30)
            assert first.result().status_code == 200 and late.status_code == 200
    assert sum(slow.ran) == 3  # the first, the late one and the warm-up; never the one whose client left


def test_concurrent_requests_are_batched(predictor, jpeg):
    _, data = jpeg
    slow = Slow(predictor, 0.3)
    with Running(slow, ServeConfig(max_batch=8, max_delay_ms=50)) as server:
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda _: requests.post(f"{server.url}/v1/predict", data=data, timeout=60),
                                    range(8)))
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert [r.status_code for r in replies] == [200] * 8
    assert len({json.dumps(rounded(r.json()), sort_keys=True) for r in replies}) == 1  # each its own, equal answer
    assert sum(slow.ran) == 9 and len(slow.ran) <= 4 and max(slow.ran) >= 3  # warm-up + batches of several
    assert f"mipd_edge_batch_size_count {float(len(slow.ran))}" in metrics


def test_the_batch_queue_bounds_cancels_and_reports_errors():
    ran, gate = [], threading.Event()

    def run(images):
        gate.wait(10)
        ran.append(len(images))
        if any(i == -1 for i in images):
            raise ValueError("a bad batch")
        return [i * 2 for i in images]

    queue = BatchQueue(run, BatchSettings(max_batch=4, max_delay_ms=0, max_queue=3, workers=1))
    first = queue.submit(1)  # taken by the worker, which waits on the gate
    time.sleep(0.1)
    second, third = queue.submit(2), queue.submit(3)
    with pytest.raises(QueueFull):
        queue.submit(4)
    assert queue.depth == 3 and third.cancel() and queue.depth == 2  # a cancelled image frees its slot at once
    fourth = queue.submit(4)
    gate.set()
    assert (first.result(10), second.result(10), fourth.result(10)) == (2, 4, 8)
    assert sum(ran) == 3  # the cancelled image never ran
    bad, good = queue.submit(-1), queue.submit(5)  # a failed batch fails its own images, and the worker goes on
    with pytest.raises(ValueError, match="a bad batch"):
        bad.result(10)
    assert good.result(10) == 10
    assert queue.depth in (0, 1)
    queue.close()
    with pytest.raises(QueueFull, match="shutting down"):
        queue.submit(6)
    with pytest.raises(MipdEdgeError):
        BatchSettings(max_batch=0)


def test_the_admin_token_comes_from_the_environment_or_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MIPD_TEST_TOKEN", TOKEN)
    assert read_admin_token("env:MIPD_TEST_TOKEN") == TOKEN
    (tmp_path / "token").write_text(TOKEN + "\n")
    assert read_admin_token(f"file:{tmp_path / 'token'}") == TOKEN and read_admin_token(None) is None
    (tmp_path / "short").write_text("abc")
    for source, message in (("env:MIPD_NOT_SET", "not set"), (TOKEN, "env:VARIABLE or file:PATH"),
                            (f"file:{tmp_path / 'short'}", "shorter than 16"), (f"file:{tmp_path}", "not a regular")):
        with pytest.raises(MipdEdgeError, match=message):
            read_admin_token(source)


@pytest.mark.slow
def test_the_cli_serves_and_drains_on_sigterm(tiny_bundle, jpeg, tmp_path):
    _, data = jpeg
    port = free_port()
    (tmp_path / "token").write_text(TOKEN)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mipd_edge.cli", "serve", str(tiny_bundle), "--port", str(port),
                             "--backend", "onnxruntime", "--admin-token", f"file:{tmp_path / 'token'}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(proc, url, 120)
        files = [(f"f{i}", (f"{i}.jpg", data)) for i in range(32)]  # a request that takes a while
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(requests.post, f"{url}/v1/predict", files=files, timeout=60)
            time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            reply = in_flight.result()
        assert reply.status_code == 200 and len(reply.json()["results"]) == 32
        assert proc.wait(timeout=60) == 0
        out, err = proc.communicate()
        assert f"serving {tiny_bundle} on http://127.0.0.1:{port}" in out and "with the admin token" in out
        assert "Traceback" not in err
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
    r = subprocess.run([sys.executable, "-m", "mipd_edge.cli", "serve", str(tiny_bundle), "--admin-token", "hunter2"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "env:VARIABLE or file:PATH" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_example_client_asks_a_live_server(predictor, tiny_world):
    client = [sys.executable, str(Path(__file__).resolve().parents[1] / "examples" / "http_client.py")]
    images = [str(p) for p in sorted((tiny_world / "data" / "images").iterdir())[:2]]
    with Running(predictor, ServeConfig()) as server:
        for sent in (images[:1], images):
            r = subprocess.run(client + sent + ["--url", server.url], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            lines = r.stdout.splitlines()
            assert [line.split(": ")[0] for line in lines] == sent
            assert all(line.split(": ")[1].split(" ")[0] in predictor.vocabulary.verbs for line in lines)
        r = subprocess.run(client + images + ["--url", server.url, "--json"], capture_output=True, text=True,
                           timeout=120)
        assert len(json.loads(r.stdout)) == 2
    r = subprocess.run(client + images[:1] + ["--url", f"http://127.0.0.1:{free_port()}"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "cannot reach" in r.stderr and "Traceback" not in r.stderr
