"""What several test modules share: a tiny SWiG space and its annotations, a training
configuration small enough for tests, and an interpreter without torch. Fixtures live in
``conftest.py``; this is plain data and functions, imported by name."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

TINY_SPACE = {
    "verbs": {
        "lifting": {"framenet": "Cause_motion", "abstract": "the AGENT lifts the ITEM at the PLACE",
                    "def": "raise something up", "order": ["agent", "item", "place"],
                    "roles": {"agent": {"framenet": "Agent", "def": "the one lifting"},
                              "item": {"framenet": "Theme", "def": "the thing lifted"},
                              "place": {"framenet": "Place", "def": "where it happens"}}},
        "running": {"framenet": "Self_motion", "abstract": "the AGENT runs at the PLACE",
                    "def": "move fast on foot", "order": ["agent", "place"],
                    "roles": {"agent": {"framenet": "Agent", "def": "the runner"},
                              "place": {"framenet": "Place", "def": "where it happens"}}},
    },
    "nouns": {"n1": {"gloss": ["man"], "def": "an adult male"},
              "n2": {"gloss": ["box", "carton"], "def": "a container"},
              "n3": {"gloss": ["field"], "def": "an open area"},
              "n4": {"gloss": ["person"], "def": "a human being"}},
}

NO_BOX = [-1, -1, -1, -1]
TINY_ANNOTATIONS = {
    "img1.jpg": {"verb": "lifting", "width": 40, "height": 40,
                 "bb": {"agent": [0, 0, 10, 10], "item": [20, 20, 30, 30], "place": NO_BOX},
                 "frames": [{"agent": "n1", "item": "n2", "place": "n3"},
                            {"agent": "n4", "item": "n2", "place": ""},
                            {"agent": "n1", "item": "n2", "place": "n3"}]},
    "img2.jpg": {"verb": "lifting", "width": 40, "height": 40,
                 "bb": {"agent": [0, 0, 10, 10], "item": NO_BOX, "place": NO_BOX},
                 "frames": [{"agent": "n1", "item": "", "place": "n3"}] * 3},
    "img3.jpg": {"verb": "running", "width": 40, "height": 40,
                 "bb": {"agent": [0, 0, 10, 10], "place": NO_BOX},
                 "frames": [{"agent": "n1", "place": "n3"}] * 3},
}


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


TINY_MODEL = {"width": 0.25, "d_model": 64, "heads": 2, "enc_layers": 1, "dec_layers": 1, "ffn": 128}


def tiny_config(**overrides):
    """A training configuration small enough for tests: 64 px, a quarter-width ResNet-18."""
    from mipd_edge.train.config import TrainConfig

    base = dict(method="none", epochs=1, image_size=64, batch_size=16, eval_batch_size=32, model=TINY_MODEL)
    return TrainConfig(**{**base, **overrides})


# the command-line options of a test-sized training run, with tiny_yaml's configuration file
TINY = ["--epochs", "1", "--image-size", "64", "--batch-size", "16"]


def tiny_yaml(tmp_path: Path, **model) -> list[str]:
    """``--config`` with the tiny architecture, ``model`` changing it (None removes a key)."""
    path = tmp_path / "tiny.yaml"
    model = {k: v for k, v in {**TINY_MODEL, **model}.items() if v is not None}
    path.write_text(json.dumps({"model": model, "eval_batch_size": 32}))  # JSON is YAML
    return ["--config", str(path)]


# an edge device's interpreter: torch and what imports it (sentence-transformers, NNCF) cannot load
BLOCK_TORCH = """
import importlib.abc, sys
class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "sentence_transformers", "nncf"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, BlockTorch())
"""


def run_without_torch(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where torch cannot be imported."""
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True, timeout=timeout)


def assert_same_situations(expected, got, score_atol: float = 1e-3, box_atol: float = 0.5) -> None:
    """Two backends' situations of the same images agree: verbs in order, scores, and per role
    the noun, its score and its box (in pixels)."""
    import numpy as np

    assert len(expected) == len(got)
    for a, b in zip(expected, got):
        assert [c.verb for c in a.candidates] == [c.verb for c in b.candidates]
        assert np.allclose([c.score for c in a.candidates], [c.score for c in b.candidates], atol=score_atol)
        pairs = [(c.roles, d.roles) for c, d in zip(a.candidates, b.candidates)]
        for roles_a, roles_b in pairs + [(a.gt_verb_roles or {}, b.gt_verb_roles or {})]:
            assert roles_a.keys() == roles_b.keys()
            for role, value in roles_a.items():
                assert value.noun == roles_b[role].noun
                assert abs(value.score - roles_b[role].score) < score_atol
                assert (value.box is None) == (roles_b[role].box is None)
                if value.box is not None:
                    assert np.allclose(value.box, roles_b[role].box, atol=box_atol)


def save_tiny(kind, out, tokenizer_dir):
    """A tiny random-weight CLIP or SigLIP in the transformers format, with a tokenizer."""
    import shutil

    import transformers

    # MiniLM's BERT vocabulary stands in for CLIP's BPE (which is not on this machine); [SEP]
    # (102) is its end token, where CLIP's text tower pools
    text = dict(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=64, eos_token_id=102)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=64,
                  patch_size=16)
    if kind == "clip":
        config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)
        model = transformers.CLIPModel(config)
    else:
        config = transformers.SiglipConfig(text_config=text, vision_config=vision)
        model = transformers.SiglipModel(config)
    model.save_pretrained(out)
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, out / f.name)
    return out


class FakeLLM(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint whose behaviour each test scripts."""

    script: list = []  # per request: "ok", "500", "slow", "400", "garbage", "badjson", "missing"
    requests = 0
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with FakeLLM.lock:
            FakeLLM.requests += 1
            action = FakeLLM.script.pop(0) if FakeLLM.script else "ok"
        if action == "slow":
            time.sleep(1.5)
        if action in ("500", "400"):
            self.send_response(int(action))
            self.end_headers()
            return
        if action == "garbage":
            payload = b"<html>not json</html>"
        else:
            content = self.answer(body["messages"][0]["content"], action)
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    @staticmethod
    def answer(prompt: str, action: str) -> str:
        verb = re.search(r'verb "([^"]+)"', prompt).group(1)
        roles = re.search(r"Use the role names exactly: (.*)\.", prompt).group(1).split(", ")
        if action == "badjson":
            return "Sure! Here you go: {glimpse: positive"
        gaze = {r: {"positive": f"the {r} really is there", "negatives": [f"a wrong {r}"]} for r in roles}
        if action == "missing":
            gaze.pop(roles[0])
        answer = {"glimpse": {"positive": f"someone is {verb} here", "negatives": ["nothing happens", "a party"]},
                  "gaze": gaze}
        return "```json\n" + json.dumps(answer) + "\n```"


def ov_swig_files(synth_dir, folder, unseen, rare, leak=False):
    """The authors' Ov-SWiG layout from a SynthSitu set: SWiG JSON subsets with extra caption fields."""
    from mipd_edge.files import read_json

    def captioned(entries):
        return {n: {**e, "verb_pos_cap": f"someone is {e['verb']}", "class_neg_cap": ["a cat", "a dog"]}
                for n, e in entries.items()}

    train, dev, test = (read_json(synth_dir / f"{s}.json") for s in ("train", "dev", "test"))
    kept, per_rare = {}, {}
    for name, entry in train.items():
        if entry["verb"] in unseen and not leak:
            continue
        if entry["verb"] in rare:
            per_rare[entry["verb"]] = per_rare.get(entry["verb"], 0) + 1
            if per_rare[entry["verb"]] > 2:
                continue
        kept[name] = entry
    folder.mkdir()
    write_json(folder / "train_L10_with_obj_cap_refined.json", captioned(kept))
    for split, entries in (("dev", dev), ("test", test)):
        write_json(folder / f"{split}_L10_unseen_with_obj_cap_refined.json",
                   captioned({n: e for n, e in entries.items() if e["verb"] in unseen}))
        write_json(folder / f"{split}_L20_rare_with_obj_cap_refined.json",
                   captioned({n: e for n, e in entries.items() if e["verb"] in rare}))
    return folder



def quiet(cache_dir):
    """The run context of a test's training or export: no progress bars, the session's cache."""
    from mipd_edge.context import RunContext

    return RunContext(progress=False, cache_dir=cache_dir)


def rounded(answer):
    """An answer with its floats to 4 decimals: a batch of two and a batch of one differ in the 7th."""
    if isinstance(answer, float):
        return round(answer, 4)
    if isinstance(answer, dict):
        return {k: rounded(v) for k, v in answer.items()}
    if isinstance(answer, list):
        return [rounded(v) for v in answer]
    return answer


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(proc: subprocess.Popen, url: str, seconds: float) -> None:
    """Until the server process ``proc`` answers ``/ready`` with 200 (it failing or the time
    running out fails the test)."""
    import requests

    deadline = time.time() + seconds
    while True:
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        try:
            if requests.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or (Ray's proxy) not routing yet
            pass
        time.sleep(0.2)


class MjpegCamera:
    """A network camera on loopback: MJPEG over HTTP (multipart/x-mixed-replace), the frames
    ``images`` in a loop at ``fps``. A test changes what it does while it runs: ``mode`` is
    ``serve``, ``stall`` (frames stop, the connection stays open) or ``down`` (connections are
    closed and new ones refused with 503)."""

    def __init__(self, images, fps: float = 20.0):
        from http.server import ThreadingHTTPServer

        import cv2

        self.jpegs = [cv2.imencode(".jpg", image)[1].tobytes() for image in images]
        self.fps, self.mode, self.sent, self.connections = fps, "serve", 0, 0
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if camera.mode == "down":
                    self.send_error(503)
                    return
                camera.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not camera.closed and camera.mode != "down":
                        if camera.mode == "serve":
                            jpeg = camera.jpegs[camera.sent % len(camera.jpegs)]
                            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                             + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                            self.wfile.flush()
                            camera.sent += 1
                        time.sleep(1 / camera.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.closed = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/camera.mjpg"

    def close(self) -> None:
        self.closed = True
        self.server.shutdown()
        self.server.server_close()
