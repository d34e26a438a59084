import pytest

from helpers import TINY_ANNOTATIONS, TINY_SPACE, write_json
from mipd_edge.baseline import FrequencyBaseline
from mipd_edge.data.swig import parse_annotation, read_space
from mipd_edge.metrics import evaluate


def test_frequency_baseline(tmp_path):
    space = read_space(write_json(tmp_path / "space.json", TINY_SPACE))
    ann = {n: parse_annotation(n, e, space) for n, e in TINY_ANNOTATIONS.items()}
    baseline = FrequencyBaseline(ann, space)
    s = baseline.predict(80, 40, gold_verb="running")
    assert [c.verb for c in s.candidates] == ["lifting", "running"]
    assert s.score == pytest.approx(2 / 3)
    agent = s.roles["agent"]
    assert agent.noun == "n1" and agent.label == "man"
    assert agent.box == pytest.approx([0, 0, 20, 10])  # mean relative box scaled to 80x40
    assert s.roles["item"].box == pytest.approx([40, 20, 60, 30])  # half the items have a box: a tie keeps it
    assert s.roles["place"].box is None
    assert set(s.gt_verb_roles) == {"agent", "place"}
    preds = baseline.predict_dataset(ann)
    m = evaluate(ann, space, preds)["all"]
    assert m["top1"]["verb"] == pytest.approx(50.0) and m["top5"]["verb"] == pytest.approx(100.0)
