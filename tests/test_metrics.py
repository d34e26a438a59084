import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import TINY_ANNOTATIONS, TINY_SPACE, write_json
from mipd_edge.data.swig import parse_annotation, read_space
from mipd_edge.errors import DatasetError
from mipd_edge.metrics import box_correct, box_iou, evaluate


def role(noun, box=None):
    return {"noun": noun, "box": box}


# img1: the gold verb is third of five; its roles: agent by the hypernym annotator (n4)
# with a box at IoU exactly 0.5, item right but box IoU 0.14, place "" (one annotator
# left it empty) without a box. img2: top-1 right, the agent box IoU 0.68, the empty item
# right, the place missing. img3 (the only "running" image): no prediction at all.
PREDICTIONS = {
    "img1.jpg": {
        "verbs": [
            {"verb": "running", "score": 0.5, "roles": {"agent": role("n1", [0, 0, 10, 10]), "place": role("n3")}},
            {"verb": "running", "score": 0.4, "roles": {}},  # a duplicate does not take a rank
            {"verb": "jumping", "score": 0.3, "roles": {}},
            {"verb": "lifting", "score": 0.2, "roles": {"agent": role("n4", [0, 0, 10, 5]),
                                                         "item": role("n2", [25, 25, 35, 35]),
                                                         "place": role("")}},
        ],
        "gt_verb_roles": {"agent": role("n2", [0, 0, 10, 10]), "item": role("n2", [20, 20, 30, 30]),
                          "place": role("n3", [0, 0, 1, 1])},
    },
    "img2.jpg": {
        "verbs": [{"verb": "lifting", "score": 0.9, "roles": {"agent": role("n1", [1, 1, 11, 11]),
                                                              "item": role("", None)}}],
        "gt_verb_roles": {"agent": role("n1", [0, 0, 10, 10]), "item": role("", [0, 0, 5, 5]),
                          "place": role("n3")},
    },
}


@pytest.fixture
def tiny(tmp_path):
    space = read_space(write_json(tmp_path / "space.json", TINY_SPACE))
    annotations = {n: parse_annotation(n, e, space) for n, e in TINY_ANNOTATIONS.items()}
    return space, annotations


def test_iou_conventions():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 5]) == 0.5  # continuous coordinates, no +1
    assert box_correct([0, 0, 10, 5], [0, 0, 10, 10])  # exactly 0.5 counts
    assert not box_correct([0, 0, 10, 4.9], [0, 0, 10, 10])
    assert box_correct(None, None)
    assert not box_correct([0, 0, 1, 1], None) and not box_correct(None, [0, 0, 1, 1])
    assert box_iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0


def test_hand_computed_case(tiny):
    space, annotations = tiny
    m = evaluate(annotations, space, PREDICTIONS)["all"]
    # per verb first: lifting (2 images), running (1 image, no prediction = zeros)
    expect = {
        "top1": {"verb": 25.0, "value": 100 / 6, "value_all": 0.0, "grnd_value": 100 / 6, "grnd_value_all": 0.0},
        "top5": {"verb": 50.0, "value": 250 / 6, "value_all": 25.0, "grnd_value": 100 / 3, "grnd_value_all": 0.0},
        "gt_verb": {"value": 250 / 6, "value_all": 25.0, "grnd_value": 25.0, "grnd_value_all": 0.0},
    }
    for setting, values in expect.items():
        for key, value in values.items():
            assert m[setting][key] == pytest.approx(value), (setting, key)
    assert m["images"] == 3 and m["verbs"] == 2


def test_average_is_per_verb_not_per_image(tiny):
    space, annotations = tiny
    m = evaluate(annotations, space, PREDICTIONS)
    # per image top-5 verb accuracy would be 2/3; per verb it is (1 + 0) / 2
    assert m["all"]["top5"]["verb"] == pytest.approx(50.0)


def test_splits_sections(tiny):
    space, annotations = tiny
    splits = {"seen": ["lifting"], "rare": [], "unseen": ["running"], "params": {}}
    m = evaluate(annotations, space, PREDICTIONS, splits)
    assert set(m) == {"all", "seen", "rare", "unseen"}
    assert m["seen"]["top5"]["verb"] == pytest.approx(100.0)
    assert m["seen"]["top1"]["value"] == pytest.approx(100 / 3)
    assert m["unseen"]["top5"]["verb"] == 0.0 and m["unseen"]["images"] == 1
    assert m["rare"]["verbs"] == 0 and m["rare"]["top1"]["verb"] == 0.0


def test_gt_verb_only_when_every_prediction_has_it(tiny):
    space, annotations = tiny
    preds = json.loads(json.dumps(PREDICTIONS))
    del preds["img2.jpg"]["gt_verb_roles"]
    m = evaluate(annotations, space, preds)
    assert "gt_verb" not in m["all"] and "top1" in m["all"]


def test_missing_prediction_scores_zero(tiny):
    space, annotations = tiny
    m = evaluate(annotations, space, {})
    assert m["all"]["top5"]["verb"] == 0.0 and m["all"]["top1"]["value"] == 0.0


def test_perfect_predictions_score_100(tiny):
    space, annotations = tiny
    preds = {}
    for name, a in annotations.items():
        roles = {r: {"noun": a.frames[0][r], "box": a.boxes[r]} for r in space.frames[a.verb].roles}
        preds[name] = {"verbs": [{"verb": a.verb, "score": 1.0, "roles": roles}], "gt_verb_roles": roles}
    m = evaluate(annotations, space, preds)["all"]
    assert all(v == pytest.approx(100.0) for s in ("top1", "top5", "gt_verb") for v in m[s].values())


@pytest.mark.parametrize("bad", [
    {"img1.jpg": {"verbs": []}},
    {"img1.jpg": {"verbs": [{"score": 1}]}},
    {"img1.jpg": {"verbs": [{"verb": "lifting", "roles": {"agent": {"noun": "n1", "box": [1, 2]}}}]}},
    {"img1.jpg": {"verbs": [{"verb": "lifting", "roles": {"agent": {"box": None}}}]}},
    {"img1.jpg": {"verbs": [{"verb": "lifting", "score": "high"}]}},
])
def test_malformed_predictions_raise(tiny, bad):
    space, annotations = tiny
    with pytest.raises(DatasetError, match="img1.jpg"):
        evaluate(annotations, space, bad)


def test_eval_cli(tmp_path):
    space = write_json(tmp_path / "space.json", TINY_SPACE)
    ann = write_json(tmp_path / "test.json", TINY_ANNOTATIONS)
    preds = write_json(tmp_path / "preds.json", PREDICTIONS)
    splits = write_json(tmp_path / "splits.json", {"seen": ["lifting"], "rare": [], "unseen": ["running"]})
    out = tmp_path / "metrics.json"
    r = subprocess.run([sys.executable, "-m", "mipd_edge.cli", "eval", "--annotations", str(ann), "--space",
                        str(space), "--predictions", str(preds), "--splits", str(splits), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "grnd-value" in r.stdout and "unseen" in r.stdout
    metrics = json.loads(out.read_text())
    assert metrics["all"]["top5"]["verb"] == pytest.approx(50.0)
    assert metrics["seen"]["gt_verb"]["value"] == pytest.approx(250 / 3)

    (tmp_path / "broken.json").write_text("{not json")
    r = subprocess.run([sys.executable, "-m", "mipd_edge.cli", "eval", "--annotations", str(ann), "--space",
                        str(space), "--predictions", str(tmp_path / "broken.json")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "broken.json" in r.stderr and "not valid JSON" in r.stderr


def test_the_paired_interval_brackets_the_difference_and_narrows_with_images():
    from mipd_edge.metrics import paired_interval

    rng = np.random.default_rng(1)

    def scores(n: int):
        verbs = {f"i{i}": f"v{i % 4}" for i in range(n)}
        before = {name: {"verb": float(rng.random() < 0.7)} for name in verbs}
        after = {name: dict(s) for name, s in before.items()}
        for name in list(after)[: n // 10]:  # a tenth of the images lose their verb
            after[name]["verb"] = 0.0
        return before, after, verbs

    small, large = scores(80), scores(2000)
    for before, after, verbs in (small, large):
        low, high = paired_interval(before, after, verbs, ["verb"])["verb"]
        per_verb = {}
        for name, verb in verbs.items():
            per_verb.setdefault(verb, []).append(after[name]["verb"] - before[name]["verb"])
        mean = 100 * np.mean([np.mean(d) for d in per_verb.values()])
        assert low <= mean <= high
    (lo_s, hi_s), (lo_l, hi_l) = (paired_interval(*s, ["verb"])["verb"] for s in (small, large))
    assert hi_l - lo_l < hi_s - lo_s  # more images, a tighter interval
    same = paired_interval(small[0], small[0], small[2], ["verb"])["verb"]
    assert same == [0.0, 0.0]  # identical answers: no difference at all
