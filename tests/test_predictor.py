import dataclasses
import json

import cv2
import numpy as np
import pytest

from helpers import assert_same_situations, run_without_torch
from mipd_edge import InvalidImageError, Predictor, VocabularyError
from mipd_edge.config import ExportConfig
from mipd_edge.data.swig import SituDataset
from mipd_edge.deploy.bundle import MANIFEST_FIELDS, BundleManifest, read_manifest, write_manifest
from mipd_edge.deploy.predictor import SituationPredictor
from mipd_edge.deploy.tasks import GSR
from mipd_edge.errors import BundleError
from mipd_edge.situation import Situation


@pytest.fixture(scope="module")
def test_images(tiny_world):
    data = SituDataset(tiny_world / "data", "test")
    return [data[i].image for i in range(0, len(data), 6)]


def test_backends_agree_on_real_images(tiny_bundle, test_images, monkeypatch):
    """Every backend, OpenVINO both with its in-graph normalisation of the uint8 canvas and
    vocabulary matching (the Predictor's default) and with numpy's, and ONNX Runtime both with
    its in-graph matching and without the onnx package (the graphs as exported), gives torch's
    situations: the deployment call and the evaluation call (top-5 roles, gold-verb roles)."""
    from mipd_edge.deploy.runtimes import onnxruntime as ort_runtime

    runs = {"torch": ("torch", {}), "onnxruntime": ("onnxruntime", {}),
            "onnxruntime-as-exported": ("onnxruntime", {}), "openvino": ("openvino", {}),
            "openvino-numpy-normalised": ("openvino", {"canvas_input": False})}
    results, evaluated = {}, {}
    find_spec = ort_runtime.importlib.util.find_spec
    for name, (backend, options) in runs.items():
        if name == "onnxruntime-as-exported":  # an edge device with ONNX Runtime alone
            monkeypatch.setattr(ort_runtime.importlib.util, "find_spec",
                                lambda n, *a: None if n == "onnx" else find_spec(n, *a))
        with Predictor(tiny_bundle, backend=backend, precision="fp32", **options) as p:
            results[name] = p.predict(test_images)
            gold = p.vocabulary.verbs[:len(test_images)]
            evaluated[name] = p._situations(test_images, "topk", gold)  # what evaluation scores
            assert p.backend == backend and p.runtime.takes_canvas == (name == "openvino")
            assert (type(p.decoder).__name__ == "GraphMatchedDecoder") == (
                backend in ("openvino", "onnxruntime") and name != "onnxruntime-as-exported")
        monkeypatch.undo()
    for name in runs:
        assert_same_situations(results["torch"] + evaluated["torch"], results[name] + evaluated[name])


def test_the_bundle_contract_is_one_typed_manifest(tiny_bundle, test_images):
    """``read_manifest`` gives a BundleManifest whose fields are exactly the manifest's, in
    ``bundle.json``'s order, and written back it is the same JSON; ``Predictor`` is the
    class of the bundle's task, whose answer type needs no checking."""
    m = read_manifest(tiny_bundle)
    assert [f.name for f in dataclasses.fields(BundleManifest)] == list(MANIFEST_FIELDS)
    assert m.to_json() == json.loads((tiny_bundle / "bundle.json").read_text())
    assert list(m.to_json()) == list(json.loads((tiny_bundle / "bundle.json").read_text()))
    assert m.task is GSR and m.inputs == GSR.inputs and m.image_size == m.model["image_size"]
    assert m.verb_scale == m.scales["verb"] and m.hoi_space is None
    with Predictor(tiny_bundle, backend="onnxruntime") as p:
        assert type(p) is SituationPredictor and p.task == "gsr"
        situation = p(test_images[0])
        assert isinstance(situation, Situation) and situation.situations == [situation]


def test_inputs_of_every_kind(tiny_bundle, tiny_world, tmp_path):
    from PIL import Image

    p = Predictor(tiny_bundle, backend="onnxruntime")
    path = next((tiny_world / "data" / "images").iterdir())
    bgr = cv2.imread(str(path))
    by_path = p(path)
    assert p(str(path)).verb == by_path.verb == p(bgr).verb == p(path.read_bytes()).verb
    assert p(Image.open(path)).verb == by_path.verb
    assert set(p.timings) == {"preprocess_ms", "inference_ms", "postprocess_ms", "total_ms", "batch"}
    h, w = bgr.shape[:2]
    box = next(v.box for v in by_path.roles.values() if v.box is not None)
    assert 0 <= box[0] <= box[2] <= w and 0 <= box[1] <= box[3] <= h  # original-image pixels
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    rgba = np.dstack([bgr, np.full((h, w), 255, np.uint8)])
    deep = bgr.astype(np.uint16) * 257
    for image in (gray, rgba, deep):
        assert p(image).verb  # converted, not rejected
    assert len(p.predict([path, bgr, gray])) == 3  # a batch-1 encoder still takes lists


def test_bad_input_raises_and_the_predictor_keeps_working(tiny_bundle, tiny_world):
    p = Predictor(tiny_bundle, backend="openvino")
    good = next((tiny_world / "data" / "images").iterdir())
    for bad in (b"", b"\x89PNG\r\n\x1a\n broken", np.zeros((10, 10, 3), np.float64), np.zeros((5, 5, 2), np.uint8),
                np.zeros((0, 5, 3), np.uint8), "/no/such/file.jpg", 3.14):
        with pytest.raises(InvalidImageError):
            p(bad)
        assert p(good).verb  # still fine


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])  # numpy matching; matching in the graph
def test_runtime_vocabulary_edits(tiny_bundle, tiny_world, backend):
    p = Predictor(tiny_bundle, backend=backend)
    image = next((tiny_world / "data" / "images").iterdir())
    verbs = set(p.vocabulary.verbs)
    p.vocabulary.remove_verb(p(image).verb)
    assert p(image).verb not in verbs - set(p.vocabulary.verbs)
    p.vocabulary.add_verb("juggling torches", "Someone throws burning torches into the air and catches them.",
                          roles={"agent": "the juggler", "place": "where it happens"})
    assert "juggling torches" in p.vocabulary.verb_matrix()[0]
    situation = p(image)
    names = [c.verb for c in situation.candidates]
    assert len(names) == 5 and all(n in p.vocabulary.frames for n in names)
    p.vocabulary.remove_verb(situation.verb)  # every edit counts, not only the first
    assert p(image).verb != situation.verb


def test_a_pinned_decoder_lasts_until_the_vocabulary_changes(tiny_bundle):
    """Calls share one pinned decoder per vocabulary version; an edit gives the next call a
    new one, while a call still holding the old one keeps its whole vocabulary."""
    p = Predictor(tiny_bundle, backend="onnxruntime")
    before = p.decoder.pinned()
    assert p.decoder.pinned() is before
    verb = before.tables.verbs[0]
    p.vocabulary.remove_verb(verb)
    after = p.decoder.pinned()
    assert after is not before and verb not in after.tables.verbs
    assert verb in before.tables.verbs and before.pinned().tables is before.tables


def test_vocabulary_that_does_not_fit_the_bundle(tiny_bundle, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    with np.load(copy / "vocabulary.npz") as z:
        arrays = dict(z)
    import json

    meta = json.loads(str(arrays["meta"]))
    meta["dim"] = 32
    arrays["meta"] = np.array(json.dumps(meta))
    for key in ("verb_embeddings", "noun_embeddings", "role_embeddings"):
        arrays[key] = np.ascontiguousarray(arrays[key][:, :32])
    np.savez(copy / "vocabulary.npz", **arrays)
    with pytest.raises(BundleError, match="vocabulary.npz has changed since export"):
        Predictor(copy, backend="onnxruntime")
    write_manifest(copy, read_manifest(copy, verify=False))  # as if exported so: intact, but it does not fit
    with pytest.raises(VocabularyError, match="32-d"):
        Predictor(copy, backend="onnxruntime")
    (copy / "vocabulary.npz").unlink()
    with pytest.raises(BundleError, match="vocabulary.npz is missing"):
        Predictor(copy, backend="onnxruntime")


def test_predictor_runs_and_edits_vocabulary_without_torch(tiny_student, tiny_world, tmp_path):
    from mipd_edge.export import export_bundle

    export_bundle(tiny_student, tmp_path / "b", ExportConfig(formats=("onnx", "openvino"), with_text_encoder=True),
                  data=tiny_world / "data")
    image = next((tiny_world / "data" / "images").iterdir())
    r = run_without_torch(f"""
from mipd_edge import Predictor
for backend in ("onnxruntime", "openvino"):
    p = Predictor({str(tmp_path / 'b')!r}, backend=backend)
    s = p({str(image)!r})
    p.vocabulary.add_verb("waving hello", "Someone raises one arm and waves at a friend.", ["agent", "place"])
    assert "waving hello" in p.vocabulary.verb_matrix()[0]
    print(backend, s.verb)
print("torch loaded:", "torch" in sys.modules)
""")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "torch loaded: False" in r.stdout and "onnxruntime" in r.stdout and "openvino" in r.stdout
    # without an exported text encoder and without sentence-transformers, an edit says what to do
    r = run_without_torch(f"""
from mipd_edge import Predictor, VocabularyError

import shutil, pathlib
src = pathlib.Path({str(tmp_path / 'b')!r})
dst = pathlib.Path({str(tmp_path / 'c')!r})
shutil.copytree(src, dst)
shutil.rmtree(dst / "text_encoder")
from mipd_edge.deploy.bundle import read_manifest, write_manifest
manifest = read_manifest(dst, verify=False)
manifest.text_encoder_onnx = None
write_manifest(dst, manifest)  # as exported without --with-text-encoder
p = Predictor(dst, backend="onnxruntime")
try:
    p.vocabulary.add_noun("n_new", ["lantern"], "a lamp")
except VocabularyError as e:
    print("ERR", e)
""")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ERR" in r.stdout and "--with-text-encoder" in r.stdout
