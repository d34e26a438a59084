"""HOI mode end to end on SynthSitu-HOI: pair situations, training with none and mipd,
evaluation, export and the Predictor."""

import collections
import dataclasses
import json

import numpy as np
import pytest
import torch

from helpers import quiet, tiny_config
from mipd_edge import Predictor
from mipd_edge.cli import main
from mipd_edge.config import ExportConfig, QuantizeConfig
from mipd_edge.context import RunContext
from mipd_edge.data.hico import find_space, rare_classes, read_hoi_annotations, seen_verbs
from mipd_edge.data.synthsitu.hoi import SynthHoiConfig
from mipd_edge.deploy.predictor import InteractionPredictor, SituationPredictor
from mipd_edge.errors import BundleError, MipdEdgeError
from mipd_edge.hoi_metrics import evaluate_hoi
from mipd_edge.situation import Interactions, Situation
from mipd_edge.train.distill import distill
from mipd_edge.train.task import TrainingInputs


@pytest.fixture(scope="session")
def hoi_world(tiny_world, tmp_path_factory, cache_dir):
    """SynthSitu-HOI, its pair situations and rationales, and a none and a mipd student."""
    from mipd_edge.data.synthsitu.hoi import generate_hoi
    from mipd_edge.train.hoi import write_hoi_pairs
    from mipd_edge.train.rationales import generate_rationales

    root = tmp_path_factory.mktemp("hoi")
    generate_hoi(root / "data", SynthHoiConfig(seed=2, trainval=60, test=16, image_size=128, workers=1), progress=False)
    write_hoi_pairs(root / "data", root / "pairs", "unseen_verb", progress=False)
    generate_rationales(root / "pairs", tiny_world / "teacher", root / "rationales.jsonl",
                        run=RunContext(progress=False, cache_dir=cache_dir))
    results = {}
    for method in ("none", "mipd"):
        results[method] = distill(root / "data", root / method, tiny_config(method=method),
                                  TrainingInputs(zero_shot="unseen_verb", teacher=tiny_world / "teacher",
                                                 rationales=root / "rationales.jsonl", pairs=root / "pairs"),
                                  quiet(cache_dir))
    return root, results


@pytest.fixture(scope="session")
def hoi_bundle(hoi_world, tmp_path_factory):
    from mipd_edge.export import export_bundle

    root, _ = hoi_world
    out = tmp_path_factory.mktemp("hoi-bundle") / "bundle"
    return out, export_bundle(root / "mipd", out, ExportConfig(formats=("onnx", "openvino")), data=root / "data")


def test_interaction_points_and_focal_loss():
    from mipd_edge.train.hoi import HoiBatch, focal_heatmap_loss, interaction_points

    human = torch.tensor([[[0.2, 0.5, 0.2, 0.6], [0.2, 0.5, 0.2, 0.6], [0.8, 0.5, 0.1, 0.5]]])
    obj = torch.tensor([[[0.4, 0.7, 0.1, 0.1], [0.4, 0.7, 0.1, 0.1], [0.9, 0.9, 0.1, 0.1]]])
    batch = HoiBatch(torch.zeros(1, 3, 64, 64), human, obj, torch.tensor([[0, 0, 1]]), torch.zeros(1, 3, 2),
                     torch.tensor([[True, True, True]]), torch.full((1, 3), -1), torch.tensor([0]),
                     torch.zeros(1, 0, 4), torch.zeros(1, 0, 4), torch.zeros(1, 0, dtype=torch.long))
    slots, pairs, heat = interaction_points(batch, 4)
    # midpoints (0.3, 0.6) -> cell (1, 2) = 9; the duplicate pair shares it; (0.85, 0.7) -> cell (3, 2) = 11
    assert slots.tolist() == [9, 11] and pairs.tolist() == [0, 2]
    assert heat[0, 9] == 1 and heat[0, 11] == 1 and heat[0, 0] < heat[0, 5] < 1  # falling off with distance
    confident = torch.full((1, 16), -8.0)
    confident[0, [9, 11]] = 8.0
    assert focal_heatmap_loss(confident, heat) < 0.01 < focal_heatmap_loss(-confident, heat)


def test_hoi_mipd_keeps_verb_distillation_off_the_shared_features():
    """Scene and soft-label knowledge, of labelled and of unlabelled pairs, train the verb
    head only; gaze and glimpse knowledge reach the shared features (through the pair
    projection and the glance). An unlabelled pair on a labelled pair's cell is left out."""
    from helpers import TINY_MODEL
    from mipd_edge.models.student import create_student
    from mipd_edge.train.hoi import HoiBatch, HoiMIPD, interaction_points, unlabelled_points

    torch.manual_seed(0)
    model = create_student("edge-s", image_size=64, text_dim=8, task="hoi", **TINY_MODEL)
    rng = np.random.default_rng(0)

    def unit(*shape):
        a = rng.normal(size=shape)
        return a / np.linalg.norm(a, axis=-1, keepdims=True)

    objective = HoiMIPD(unit(2, 8), unit(2, 2, 8), rng.normal(size=(2, 3)), model, tiny_config(method="mipd"),
                        unit(3, 8), rng.normal(size=(3, 3)))
    human, obj = torch.tensor([[[0.3, 0.5, 0.2, 0.6]]] * 2), torch.tensor([[[0.6, 0.6, 0.1, 0.1]]] * 2)
    # image 0: an unlabelled pair in another cell (crop 2) and one on its labelled pair's cell (crop 0)
    other_human = torch.tensor([[[0.1, 0.1, 0.1, 0.1], [0.3, 0.5, 0.2, 0.6]]] * 2)
    other_object = torch.tensor([[[0.1, 0.3, 0.1, 0.1], [0.6, 0.6, 0.1, 0.1]]] * 2)
    batch = HoiBatch(torch.randn(2, 3, 64, 64), human, obj, torch.zeros(2, 1, dtype=torch.long),
                     torch.ones(2, 1, 3), torch.ones(2, 1, dtype=torch.bool), torch.tensor([[0], [1]]),
                     torch.arange(2), other_human, other_object, torch.tensor([[2, 0], [-1, -1]]))
    slots, gold, _ = interaction_points(batch, 4)
    others, crops = unlabelled_points(batch, 4, slots)
    assert others.tolist() == [0] and crops.tolist() == [2]  # cell 0 of image 0; the other cell is taken
    terms = objective(model, model(batch.images), batch, slots, gold, torch.from_numpy(unit(3, 8)).float())
    shared = [p for n, p in model.named_parameters() if n.startswith("decoder.")]

    def reaches(term, params):
        grads = torch.autograd.grad(terms[term], params, retain_graph=True, allow_unused=True)
        return any(g is not None and g.abs().sum() > 0 for g in grads)

    for term in ("mipd_scene", "mipd_soft", "mipd_scene_unlabelled", "mipd_soft_unlabelled"):
        assert reaches(term, list(model.verb_head.parameters())) and not reaches(term, shared)
    assert reaches("mipd_instance", shared) and reaches("mipd_glimpse", list(model.glance_head.parameters()))


def test_pair_situations_are_honest(hoi_world):
    root, _ = hoi_world
    space = find_space(root / "data")
    crops = json.loads((root / "pairs" / "train.json").read_text())
    seen = {space.verbs[v - 1] for v in seen_verbs(space, "unseen_verb")}
    assert crops and {c["verb"] for c in crops.values()} <= seen
    assert json.loads((root / "pairs" / "splits.json").read_text())["unseen"] == sorted(set(space.verbs) - seen)
    assert all(set(c["bb"]) == {"agent", "item"} for c in crops.values())


def test_hoi_students_train_and_evaluate(hoi_world, capsys):
    root, results = hoi_world
    space = find_space(root / "data")
    for method in ("none", "mipd"):
        config = json.loads((root / method / "config.json").read_text())
        assert config["task"] == "hoi" and config["model"]["task"] == "hoi"
        assert set(config["training_verbs"]) == {space.verbs[v - 1] for v in seen_verbs(space, "unseen_verb")}
        assert len(results[method]["history"]) == 1
    losses = results["mipd"]["history"][-1]["losses"]
    assert {"mipd_scene", "mipd_instance", "mipd_soft", "mipd_glimpse", "interaction", "verb"} <= set(losses)
    assert not any(k.startswith("mipd") for k in results["none"]["history"][-1]["losses"])
    preds = root / "preds.json"
    assert main(["predict-dataset", "--model", str(root / "mipd"), "--data", str(root / "data"),
                 "--out", str(preds)]) == 0
    detections = json.loads(preds.read_text())
    test = read_hoi_annotations(root / "data" / "test_hico.json", space)
    assert set(detections) == {i.file_name for i in test}
    for dets in detections.values():  # the space's classes only, best first, boxes in pixels
        assert all(space.class_of(d["verb"], d["object"]) is not None for d in dets)
        assert [d["score"] for d in dets] == sorted((d["score"] for d in dets), reverse=True)
    out = root / "metrics.json"
    assert main(["eval", "--annotations", str(root / "data" / "test_hico.json"), "--predictions", str(preds),
                 "--zero-shot", "unseen_verb", "--train-annotations", str(root / "data" / "trainval_hico.json"),
                 "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    train = read_hoi_annotations(root / "data" / "trainval_hico.json", space)
    assert metrics == json.loads(json.dumps(evaluate_hoi(test, detections, space, rare_classes(space, train),
                                                         "unseen_verb")))
    assert metrics["unseen"] is not None and metrics["seen"] is not None
    assert "Unseen" in capsys.readouterr().out


def test_gold_pair_verbs(hoi_world):
    """Verb top-1 at the ground-truth pairs: ranking among the unseen verbs alone can only
    do better than ranking among all; a verb head that returns one seen verb's text gets
    every seen pair of that verb and no unseen pair."""
    from mipd_edge.data.hico import image_dir
    from mipd_edge.data.hoi_vocabulary import hoi_vocabulary
    from mipd_edge.deploy.preprocess import Preprocess
    from mipd_edge.models.store import load_student
    from mipd_edge.models.student import create_student
    from mipd_edge.text import load_text_encoder
    from mipd_edge.train.hoi import HoiTrainSet, gold_pair_verbs, interaction_points

    root, _ = hoi_world
    space = find_space(root / "data")
    test = read_hoi_annotations(root / "data" / "test_hico.json", space)
    model, info = load_student(root / "mipd")
    vocab = hoi_vocabulary(space, range(1, len(space.verbs) + 1), load_text_encoder(info["text_encoder_spec"]))
    pairs = HoiTrainSet(test, image_dir(root / "data", "test"), space, vocab, Preprocess.from_json(info["preprocess"]),
                        progress=False)
    seen = set(info["training_verbs"])
    scores = gold_pair_verbs(model, pairs, seen)
    assert scores["pairs"]["seen"] > 0 and scores["pairs"]["unseen"] > 0
    assert 0 <= scores["unseen"] <= scores["unseen_among_unseen"] <= 100 and 0 <= scores["seen"] <= 100

    verb = vocab.verbs.index(sorted(seen)[0])
    with torch.no_grad():
        model.verb_head.weight.zero_()
        model.verb_head.bias.copy_(torch.from_numpy(vocab.verb_matrix()[1][verb]))
    fixed = gold_pair_verbs(model, pairs, seen)
    batch = pairs.batch(np.arange(len(pairs)))
    _, gold, _ = interaction_points(batch, model.cfg.image_size // 16)
    target = batch.verbs.flatten(0, 1)[gold] > 0
    only_seen = ~target[:, [vocab.verbs.index(v) for v in sorted(set(vocab.verbs) - seen)]].any(1)
    assert fixed["seen"] == pytest.approx(100 * target[only_seen, verb].float().mean().item())
    assert fixed["unseen"] == 0

    with pytest.raises(MipdEdgeError, match="verb names"):
        gold_pair_verbs(model, pairs, {"1", "2"})
    with pytest.raises(MipdEdgeError, match="HOI student"):
        gold_pair_verbs(create_student("edge-s", image_size=64, text_dim=model.cfg.text_dim), pairs, seen)


def test_hoi_bundle_through_the_predictor(hoi_world, hoi_bundle, tiny_bundle):
    root, _ = hoi_world
    bundle, manifest = hoi_bundle
    assert manifest.outputs["decoder"] == ["human_boxes", "object_boxes", "objects", "verbs", "interaction"]
    assert max(manifest.verification["onnx"]["max_abs_diff"].values()) < 1e-3
    space = find_space(root / "data")
    test = read_hoi_annotations(root / "data" / "test_hico.json", space)
    images = [root / "data" / "images" / i.file_name for i in test[:4]]
    found = {}
    for backend, options in (("torch", {}), ("onnxruntime", {}), ("openvino", {})):
        with Predictor(bundle, backend=backend, **options) as p:
            found[backend] = p.detect(images, classes_only=True)
            assert type(p) is InteractionPredictor
            situations = p(images[0])
            assert isinstance(situations, Interactions) and all(isinstance(s, Situation) for s in situations)
            assert situations.situations == list(situations)
            assert situations.to_json() == {"interactions": [s.to_json() for s in situations]}
            assert p.predict(images, threshold=0.0)[0], "every image gives its interactions at threshold 0"
    for backend in ("onnxruntime", "openvino"):
        for a, b in zip(found["torch"], found[backend]):
            assert [(d["verb"], d["object"]) for d in a[:5]] == [(d["verb"], d["object"]) for d in b[:5]]
            assert np.allclose([d["human_box"] for d in a[:5]], [d["human_box"] for d in b[:5]], atol=0.5)
    with Predictor(bundle, backend="onnxruntime") as p:  # the vocabulary stays editable
        p.vocabulary.add_verb("juggling-clubs", "Someone throws several objects into the air and catches them.",
                              ["agent", "item"])
        assert "juggling-clubs" in p.vocabulary.verbs
        p.detect(images[:1])
    with Predictor(tiny_bundle, backend="onnxruntime") as p:  # a situation bundle's class has no detect
        assert type(p) is SituationPredictor and not hasattr(p, "detect")
    with pytest.raises(BundleError, match="is a hoi bundle; SituationPredictor serves gsr"):
        SituationPredictor(bundle, backend="onnxruntime")


def test_hoi_bundle_streams_a_folder(hoi_world, hoi_bundle, tmp_path):
    from mipd_edge.deploy.streams import ImageSource, StreamWriter, run_stream

    root, _ = hoi_world
    with Predictor(hoi_bundle[0], backend="onnxruntime") as p:
        stats = run_stream(p, ImageSource(root / "data" / "images"), StreamWriter(tmp_path / "out.mp4",
                           tmp_path / "out.jsonl"), max_frames=5)
    assert stats.frames == 5
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and all(isinstance(line["interactions"], list) for line in lines)


def test_hoi_stream_tracks_each_interaction(hoi_world, hoi_bundle, tmp_path):
    """A camera panning slowly over one scene: the people and objects keep their tracks, and
    each interaction its id, from the second frame on."""
    pytest.importorskip("trackers")
    from mipd_edge.deploy.image import load_image
    from mipd_edge.deploy.streams import StreamSet, StreamWriter
    from mipd_edge.deploy.streams.sources import Frame

    root, _ = hoi_world
    image = load_image(sorted((root / "data" / "images").iterdir())[0])
    frames = [Frame(i, np.roll(image, 2 * i, axis=1), "pan") for i in range(8)]
    with Predictor(hoi_bundle[0], backend="onnxruntime") as p:
        p.threshold = 0.0  # the tiny student's scores are all low; every interaction it finds is answered
        streams = StreamSet(p)
        streams.add("pan", frames, StreamWriter(json_lines=tmp_path / "pan.jsonl"))
        assert streams.run().sources["pan"].frames == 8
    lines = [json.loads(line)["interactions"] for line in (tmp_path / "pan.jsonl").read_text().splitlines()]
    assert lines[1] and all("track" not in i for i in lines[0])
    ids = [{i["track"] for i in line if "track" in i} for line in lines[1:]]
    seen = collections.Counter(i for frame in ids for i in frame)
    # an untrained student's boxes flicker, yet its interactions keep their ids: one is followed
    # through nearly the whole pan, and ids are few against the interactions answered
    assert all(ids) and max(seen.values()) >= len(ids) - 2 and len(seen) <= sum(map(len, ids)) / 3
    for line in lines[1:]:
        for i in filter(lambda i: "track" in i, line):
            assert {"track"} <= set(i["verbs"][0]["roles"]["agent"]) and "track" in i["verbs"][0]["roles"]["item"]


def test_an_interaction_threshold_is_a_score(hoi_bundle):
    with Predictor(hoi_bundle[0], backend="onnxruntime") as p:
        for bad in ("0.5", 1.5, -0.1, True, None):
            with pytest.raises(MipdEdgeError, match="threshold is a number from 0 to 1"):
                p.threshold = bad
        with pytest.raises(MipdEdgeError, match="threshold is a number from 0 to 1"):
            p.predict([np.zeros((32, 32, 3), np.uint8)], threshold=2)
        p.threshold = 1
        assert p.threshold == 1.0 and p.predict([np.zeros((32, 32, 3), np.uint8)]) == [[]]


def test_the_hoi_page_example_runs_as_written(hoi_world, hoi_bundle, tmp_path, cache_dir):
    """docs/hoi.md's Python example, in a folder holding hoi/bundle and photo.jpg."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "hoi.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", page, re.S)
    root, _ = hoi_world
    (tmp_path / "hoi").mkdir()
    (tmp_path / "hoi" / "bundle").symlink_to(hoi_bundle[0])
    (tmp_path / "photo.jpg").write_bytes(sorted((root / "data" / "images").iterdir())[0].read_bytes())
    (tmp_path / "example.py").write_text(code)
    r = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def test_interactions_draw_themselves_and_predict_saves_them(hoi_bundle, hoi_world, tmp_path):
    import subprocess
    import sys

    import cv2

    root, _ = hoi_world
    image_path = sorted((root / "data" / "images").rglob("*.jpg"))[0]
    with Predictor(hoi_bundle[0], backend="onnxruntime") as predictor:
        answer = predictor(image_path)
    assert isinstance(answer, Interactions)
    image = cv2.imread(str(image_path))
    drawn = answer.plot(image)
    assert drawn.shape == image.shape and (drawn != image).any()  # at least the caption
    r = subprocess.run([sys.executable, "-m", "mipd_edge.cli", "predict", "--model", str(hoi_bundle[0]), "--source",
                        str(image_path), "--save", str(tmp_path / "ann"), "--json", str(tmp_path / "a.jsonl")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "ann" / image_path.name).is_file()
    assert "interactions" in json.loads((tmp_path / "a.jsonl").read_text().splitlines()[0])


@pytest.mark.slow
def test_hoi_int8_bundle_with_accuracy_control(hoi_world, tmp_path, monkeypatch):
    """An HOI student quantized (PTQ, ONNX and OpenVINO, accuracy control on the held-out
    training images): control and gate see no unseen class and no unseen verb, both INT8
    graphs detect, and the gate that `auto` reads is the held-out mAP."""
    import nncf

    from mipd_edge.data.hico import dev_holdout, training_images
    from mipd_edge.deploy.runtimes.selection import accuracy_gate
    from mipd_edge.quantize import quantize_bundle

    root, _ = hoi_world
    info = json.loads((root / "mipd" / "config.json").read_text())
    space = find_space(root / "data")
    dev = dev_holdout(training_images(root / "data", "unseen_verb")[1], info["train"]["seed"])[1]
    unseen_verbs = {space.verbs[v - 1] for v in range(1, len(space.verbs) + 1)} - \
        {space.verbs[v - 1] for v in seen_verbs(space, "unseen_verb")}
    real_control, seen_by_control = nncf.quantize_with_accuracy_control, []

    def watched_control(model, calibration, validation, validate, **kwargs):
        seen_by_control.extend(name for name, *_ in validation.get_data())
        return real_control(model, calibration, validation, validate, **kwargs)

    monkeypatch.setattr(nncf, "quantize_with_accuracy_control", watched_control)
    m = quantize_bundle(root / "mipd", root / "data", tmp_path / "int8",
                        QuantizeConfig(method="ptq", calib_size=16, max_drop=1.0), run=RunContext(progress=False))
    assert {"onnx-int8", "openvino-int8"} <= set(m.graphs) and m.precision == "int8"
    assert sorted(seen_by_control) == sorted(i.file_name for i in dev)
    assert all(space.verbs[p.verb - 1] not in unseen_verbs for i in dev for p in i.pairs)
    metrics = m.metrics
    assert metrics["int8_minus_fp32_map"]["full"] == pytest.approx(metrics["int8"]["full"] - metrics["fp32"]["full"])
    assert metrics["gate"]["images"] == len(dev)
    test = read_hoi_annotations(root / "data" / "test_hico.json", space)
    images = [root / "data" / "images" / i.file_name for i in test[:3]]
    for backend in ("onnxruntime", "openvino"):
        with Predictor(tmp_path / "int8", backend=backend, precision="int8") as p:
            assert p.precision == "int8" and len(p.detect(images)) == 3

    low, high = metrics["gate"]["ci95"]["int8"]["full"]  # the paired bootstrap of full mAP over the images
    assert low <= high

    def gated(delta, interval=None):
        gate = {k: v for k, v in metrics["gate"].items() if k != "ci95"}
        if interval:
            gate["ci95"] = {"int8": {"full": interval}}
        return accuracy_gate(dataclasses.replace(m, metrics={**metrics, "gate": gate,
                                                             "int8_minus_fp32_map": {"full": delta}}))

    assert gated(-0.5) is None and gated(-3.0) == "it loses 3.00 points of full against FP32 (gate: 1)"
    assert gated(-3.0, [-4.0, -0.5]) is None  # the interval's better end is within the gate: noise alone
    assert gated(-3.0, [-4.0, -2.0]).startswith("even the better end of its 95% interval loses 2.00 points")

    # the benchmark's HOI rows: latency and test mAP (all / unseen classes) per backend and precision
    from mipd_edge.benchmark import BenchmarkSettings, run_benchmark
    from mipd_edge.benchmark_report import format_results

    settings = BenchmarkSettings(backends=("onnxruntime",), precisions=("fp32", "int8"), batches=(1,),
                                 data=str(root / "data"), seconds=0.2, warmup=2, min_iterations=5, settle_s=0.02)
    results = run_benchmark([tmp_path / "int8"], settings, tmp_path / "bench")
    rows = {(r["backend"], r["precision"]): r for r in results["rows"] if r["status"] == "ok"}
    # torch: the baseline every speed-up is measured against
    assert set(rows) == {("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")}
    with Predictor(tmp_path / "int8", backend="onnxruntime", precision="int8") as p:
        found = p.detect([root / "data" / "images" / i.file_name for i in test], classes_only=True)
    expected = evaluate_hoi(test, {i.file_name: d for i, d in zip(test, found)}, space,
                            zero_shot="unseen_verb", rare=space.rare or [])
    got = rows[("onnxruntime", "int8")]["metrics"]
    assert got["zero_shot"] == "unseen_verb" and got["unseen"] == pytest.approx(expected["unseen"])
    summary = results["summary"]["onnxruntime_int8_minus_fp32_map"]
    assert summary["full"] == pytest.approx(got["full"] - rows[("onnxruntime", "fp32")]["metrics"]["full"])
    assert "unseen mAP" in format_results(results)


@pytest.mark.slow
def test_hoi_qat_bundle(hoi_world, tmp_path):
    """QAT on an HOI student: its training images (no unseen class) fine-tune the fake-quantized
    encoder, the Q/DQ graph runs on ONNX Runtime and its held-out mAP is recorded beside FP32's."""
    from mipd_edge.quantize import quantize_bundle

    root, _ = hoi_world
    m = quantize_bundle(root / "none", root / "data", tmp_path / "qat",
                        QuantizeConfig(method="qat", calib_size=8, qat_epochs=1, formats=("onnx",)),
                        run=RunContext(progress=False))
    assert m.quantization["method"] == "qat" and m.quantization["qat"]["steps"] >= 1
    assert m.verification["onnx-int8"]["glance_cosine_mean"] >= 0.9
    assert set(m.metrics["int8_minus_fp32_map"]) == {"full"} and m.metrics["backend"] == "onnxruntime"
    test = read_hoi_annotations(root / "data" / "test_hico.json", find_space(root / "data"))
    with Predictor(tmp_path / "qat", backend="onnxruntime", precision="int8") as p:
        assert len(p.detect([root / "data" / "images" / test[0].file_name])) == 1


def test_hoi_commands(hoi_world, tmp_path):
    """hoi-pairs, distill, export --precision int8 and predict-dataset on that bundle, in-process."""
    from helpers import TINY_MODEL
    from mipd_edge.deploy.bundle import read_manifest
    from mipd_edge.evaluation import hoi_detections

    root, _ = hoi_world
    data, config = root / "data", tmp_path / "tiny.yaml"
    config.write_text(json.dumps({"model": TINY_MODEL, "eval_batch_size": 32}))
    assert main(["hoi-pairs", "--data", str(data), "--out", str(tmp_path / "pairs"), "--zero-shot", "unseen_verb"]) == 0
    pairs = json.loads((tmp_path / "pairs" / "train.json").read_text())
    assert pairs == json.loads((root / "pairs" / "train.json").read_text())  # the same crops as the API writes
    assert main(["distill", "--data", str(data), "--out", str(tmp_path / "s"), "--method", "none",
                 "--zero-shot", "unseen_verb", "--epochs", "1", "--image-size", "64", "--batch-size", "16",
                 "--config", str(config)]) == 0
    assert main(["export", "--model", str(tmp_path / "s"), "--out", str(tmp_path / "b"), "--data", str(data),
                 "--precision", "int8", "--formats", "onnx"]) == 0
    assert read_manifest(tmp_path / "b").precision == "int8"
    assert main(["predict-dataset", "--model", str(tmp_path / "b"), "--data", str(data), "--backend", "onnxruntime",
                 "--out", str(tmp_path / "preds.json")]) == 0
    space = find_space(data)
    test = read_hoi_annotations(data / "test_hico.json", space)
    with Predictor(tmp_path / "b", backend="onnxruntime") as p:
        expected = hoi_detections(p, test, data / "images")
    assert json.loads((tmp_path / "preds.json").read_text()) == json.loads(json.dumps(expected))


def test_all_pairs_distils_at_the_unlabelled_pairs_honestly(hoi_world, tiny_world, tmp_path, cache_dir):
    """``mipd: {pairs: all}``: the unlabelled pairs are every person box with every object box
    of the labelled pairs that is no labelled pair (no other box, no verb); the student gets
    scene and soft-label terms at them, through the verb head alone."""
    from mipd_edge.data.hico import training_images
    from mipd_edge.data.hoi_pairs import unlabelled_pairs
    from mipd_edge.train.config import MipdConfig
    from mipd_edge.train.distill import distill
    from mipd_edge.train.hoi import write_hoi_pairs

    root, _ = hoi_world
    pairs = write_hoi_pairs(root / "data", tmp_path / "pairs", "unseen_verb", progress=False, unlabelled=True)
    assert (pairs / "train.json").read_bytes() == (root / "pairs" / "train.json").read_bytes()
    others = json.loads((pairs / "unlabelled.json").read_text())
    _, images = training_images(root / "data", "unseen_verb")
    by_name = {i.file_name: i for i in images}
    assert len(others) == sum(len(unlabelled_pairs(i)) for i in images) > 0
    for entry in others.values():
        image, (s, o) = by_name[entry["image"]], entry["pair"]
        labelled = {(p.subject, p.object) for p in image.pairs}
        assert (s, o) not in labelled and s in {a for a, _ in labelled} and o in {b for _, b in labelled}
        assert "verb" not in entry and "frames" not in entry
    cfg = tiny_config(method="mipd", mipd=MipdConfig(pairs="all"))
    result = distill(root / "data", tmp_path / "student", cfg,
                     TrainingInputs(zero_shot="unseen_verb", teacher=tiny_world / "teacher",
                                    rationales=root / "rationales.jsonl", pairs=pairs),
                     quiet(cache_dir))
    losses = result["history"][-1]["losses"]
    assert {"mipd_scene_unlabelled", "mipd_soft_unlabelled", "mipd_scene"} <= set(losses)
    assert all(v > 0 for k, v in losses.items() if k.startswith("mipd"))
    # ramped in only at the very end of training: every distillation term counts for nothing
    late = dataclasses.replace(cfg, distill_from=1.0, distill_full=1.0)
    history = distill(root / "data", tmp_path / "late", late,
                      TrainingInputs(zero_shot="unseen_verb", teacher=tiny_world / "teacher",
                                     rationales=root / "rationales.jsonl", pairs=pairs),
                      quiet(cache_dir))["history"]
    assert all(v == 0 for k, v in history[-1]["losses"].items() if k.startswith("mipd"))
    info = json.loads((tmp_path / "student" / "config.json").read_text())
    assert info["unlabelled_pairs"] == len(others) and info["train"]["mipd"]["pairs"] == "all"
    # the kept scene prompt maps the labelled crops' teacher features to the very knowledge NMPA made
    from mipd_edge.train.nmpa import Knowledge

    folder = cache_dir / "knowledge" / info["knowledge"]
    knowledge = Knowledge(info["knowledge"], np.load(folder / "scene.npy"), np.load(folder / "instance.npy"), folder)
    features = np.load(cache_dir / "teacher" / info["teacher_cache"] / "global.npy")
    assert np.allclose(knowledge.scene_of(features), knowledge.scene, atol=1e-5)
    with pytest.raises(MipdEdgeError, match="hoi-pairs --unlabelled"):
        distill(root / "data", tmp_path / "without", cfg,
                TrainingInputs(zero_shot="unseen_verb", teacher=tiny_world / "teacher",
                               rationales=root / "rationales.jsonl", pairs=root / "pairs"),
                quiet(cache_dir))
    with pytest.raises(MipdEdgeError, match="it is for interaction datasets"):
        distill(tiny_world / "data", tmp_path / "gsr", tiny_config(method="mipd", mipd=MipdConfig(pairs="all")),
                TrainingInputs(teacher=tiny_world / "teacher", rationales=tiny_world / "rationales.jsonl"),
                quiet(cache_dir))


def test_seen_verb_calibration_is_learnt_from_training_verbs_only(hoi_world, tmp_path, cache_dir):
    """The calibration student does without a few training verbs (pseudo-unseen), never an
    unseen one; the bias is chosen on the real student's held-out training images; a bias
    on every verb but one makes that one come first."""
    from mipd_edge.data.hoi_vocabulary import hoi_vocabulary
    from mipd_edge.deploy.preprocess import Preprocess
    from mipd_edge.models.inference import interaction_decoder, predict_hoi
    from mipd_edge.models.store import load_student
    from mipd_edge.text import model_text_encoder
    from mipd_edge.train.hoi_calibration import BIASES, calibrate_seen_bias, pseudo_unseen_verbs

    root, _ = hoi_world
    space = find_space(root / "data")
    training = {space.verbs[v - 1] for v in seen_verbs(space, "unseen_verb")}
    result = calibrate_seen_bias(root / "data", tmp_path / "calibration", tiny_config(),
                                 TrainingInputs(zero_shot="unseen_verb"), count=2, run=quiet(cache_dir))
    assert result["bias"] in BIASES and len(result["harmonic_map"]) == len(BIASES)
    assert len(result["pseudo_unseen"]) == 2 and set(result["pseudo_unseen"]) <= training
    info = json.loads((tmp_path / "calibration" / "config.json").read_text())
    assert info["data"]["held_out_verbs"] == result["pseudo_unseen"]
    assert set(info["training_verbs"]) == training - set(result["pseudo_unseen"])
    with pytest.raises(MipdEdgeError, match="does without some"):
        pseudo_unseen_verbs(seen_verbs(space, "unseen_verb"), 0, count=len(training))
    with pytest.raises(MipdEdgeError, match="held-out verbs must be some"):
        distill(root / "data", tmp_path / "bad", tiny_config(),
                TrainingInputs(zero_shot="unseen_verb", hold_out_verbs=tuple([len(space.verbs) + 1])), quiet(cache_dir))

    model, info = load_student(root / "none")
    vocab = hoi_vocabulary(space, range(1, len(space.verbs) + 1), model_text_encoder(info))
    test = read_hoi_annotations(root / "data" / "test_hico.json", space)[:4]
    kept = vocab.verbs[0]
    decoder = interaction_decoder(model, vocab, verb_bias={v: 100.0 for v in vocab.verbs if v != kept})
    preds = predict_hoi(model, test, root / "data" / "images", decoder, Preprocess.from_json(info["preprocess"]))
    assert all(d[0]["verb_name"] == kept for d in preds.values() if d)


def test_the_authors_loss_shapes_train_an_hoi_student(hoi_world, tiny_world, tmp_path, cache_dir):
    """``mipd: {losses: authors}``: NMPA with the cosine hinge (knowledge of its own) and L1 distillation."""
    from mipd_edge.train.config import MipdConfig

    root, _ = hoi_world
    cfg = tiny_config(method="mipd", mipd=MipdConfig(losses="authors"))
    result = distill(root / "data", tmp_path / "student", cfg,
                     TrainingInputs(zero_shot="unseen_verb", teacher=tiny_world / "teacher",
                                    rationales=root / "rationales.jsonl", pairs=root / "pairs"),
                     quiet(cache_dir))
    losses = result["history"][-1]["losses"]
    assert {"mipd_scene", "mipd_instance", "mipd_soft", "mipd_glimpse"} <= set(losses)
    assert all(np.isfinite(v) and v > 0 for k, v in losses.items() if k.startswith("mipd"))
    info = json.loads((tmp_path / "student" / "config.json").read_text())
    mipd = json.loads((root / "mipd" / "config.json").read_text())
    assert info["knowledge"] != mipd["knowledge"] and info["teacher_cache"] == mipd["teacher_cache"]
