import json

import numpy as np
import pytest

from mipd_edge.cli import main
from mipd_edge.data import hico_det_lists as lists
from mipd_edge.data.hico import HoiSpace, drop_unseen, hico_det_space, rare_classes, read_hoi_annotations, seen_verbs
from mipd_edge.errors import DatasetError
from mipd_edge.hoi_metrics import (
    average_precision,
    evaluate_hoi,
    image_matches,
    iou_matrix,
    map_of_images,
    paired_map_interval,
)


def test_published_tables_are_consistent():
    """The tables were copied from two code bases; every cross-check they allow holds."""
    assert (len(lists.VERBS), len(lists.OBJECTS), len(lists.HOI_VERB), len(lists.HOI_OBJECT)) == (117, 80, 600, 600)
    pairs = list(zip(lists.HOI_VERB, lists.HOI_OBJECT))
    assert len(set(pairs)) == 600
    assert sorted(o for v, o in pairs if lists.VERBS[v] == "no_interaction") == list(range(80))
    assert len(lists.RARE) == 138
    sizes = {k: len(set(v)) for k, v in lists.ZERO_SHOT.items()}
    assert sizes == {"rare_first": 120, "non_rare_first": 120, "unseen_object": 100, "unseen_verb": 84}
    # rare-first: GEN-VLKT's list is HOICLIP's set, all rare; non-rare-first: no rare class
    assert set(lists.ZERO_SHOT["rare_first"]) == set(lists.RARE_FIRST_HOICLIP) <= set(lists.RARE)
    assert not set(lists.ZERO_SHOT["non_rare_first"]) & set(lists.RARE)
    # unseen verb: exactly every class of the 20 listed verbs; unseen object: every class of 12 objects
    assert {i for i, (v, _) in enumerate(pairs) if v in lists.UNSEEN_VERBS} == set(lists.ZERO_SHOT["unseen_verb"])
    objects = {pairs[i][1] for i in lists.ZERO_SHOT["unseen_object"]}
    assert len(objects) == 12
    assert {i for i, (_, o) in enumerate(pairs) if o in objects} == set(lists.ZERO_SHOT["unseen_object"])


def test_hico_det_space():
    space = hico_det_space()
    assert len(space.classes) == 600 and len(space.verbs) == 117 and len(space.objects) == 80
    assert space.class_of(5, 5) == 0 and space.class_name(0) == "board airplane"  # verb 5 board, COCO 5 airplane
    assert space.class_of(5, 1) is None  # boarding a person is no HICO-DET class
    assert rare_classes(space) == frozenset(lists.RARE)
    assert len(seen_verbs(space, "unseen_verb")) == 117 - 20
    assert len(seen_verbs(space, "rare_first")) == 117  # unseen combinations of seen verbs
    with pytest.raises(DatasetError, match="no zero-shot split"):
        space.unseen("rare-first")
    assert HoiSpace.from_json(json.loads(json.dumps(space.to_json()))).classes == space.classes


@pytest.fixture
def space():
    return HoiSpace("toy", ("hold", "kick"), {1: "person", 2: "ball", 3: "cup"}, ((1, 2), (1, 3), (2, 2)),
                    {"kick-ball": (2,)}, rare=(1,))


def entry(name, boxes, hois):
    return {"file_name": name, "annotations": [{"bbox": b, "category_id": c} for b, c in boxes],
            "hoi_annotation": [{"subject_id": s, "object_id": o, "category_id": v} for s, o, v in hois]}


def write(tmp_path, obj, name="test.json"):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def test_reader_and_its_errors(tmp_path, space):
    ok = [entry("a.jpg", [([0, 0, 9, 19], 1), ([10, 0, 19, 9], 2)], [(0, 1, 1), (0, 1, 2)])]
    images = read_hoi_annotations(write(tmp_path, ok), space)
    assert images[0].hoi_classes(space) == [0, 2] and images[0].boxes.shape == (2, 4)
    bad = {
        "malformed entry": [{"file_name": "a.jpg", "annotations": []}],
        "out of range": [entry("a.jpg", [([0, 0, 9, 9], 1)], [(0, 1, 1)])],
        "not in toy": [entry("a.jpg", [([0, 0, 9, 9], 1), ([0, 0, 9, 9], 7)], [(0, 1, 1)])],
        "x2 >= x1": [entry("a.jpg", [([9, 0, 0, 9], 1), ([0, 0, 9, 9], 2)], [(0, 1, 1)])],
        "verb id 3": [entry("a.jpg", [([0, 0, 9, 9], 1), ([0, 0, 9, 9], 2)], [(0, 1, 3)])],
        "JSON list": {"images": []},
    }
    for message, content in bad.items():
        with pytest.raises(DatasetError, match=message):
            read_hoi_annotations(write(tmp_path, content), space)


def test_training_drops_every_trace_of_unseen_classes(tmp_path, space):
    data = [entry("a.jpg", [([0, 0, 9, 9], 1), ([0, 0, 9, 9], 2)], [(0, 1, 1), (0, 1, 2)]),  # hold + kick one ball
            entry("b.jpg", [([0, 0, 9, 9], 1), ([0, 0, 9, 9], 2), ([0, 0, 9, 9], 3)], [(0, 1, 2), (0, 2, 1)]),
            entry("c.jpg", [([0, 0, 9, 9], 1), ([0, 0, 9, 9], 3)], [(0, 1, 1)])]
    images = read_hoi_annotations(write(tmp_path, data), space)
    kept = drop_unseen(images, space, "kick-ball")
    assert [i.file_name for i in kept] == ["b.jpg", "c.jpg"]  # a.jpg's only pair also kicks the ball
    assert [c for i in kept for c in i.hoi_classes(space)] == [1, 1]
    assert drop_unseen(images, space, None) == images


def test_iou_and_average_precision_by_hand():
    assert np.isclose(iou_matrix([[0, 0, 9, 9]], [[0, 0, 9, 9], [5, 0, 14, 9], [20, 20, 30, 30]]),
                      [[1.0, 50 / 150, 0.0]]).all()
    tp, scores = np.array([1.0, 0.0, 1.0]), np.array([0.9, 0.8, 0.7])
    # TP, FP, TP against 2 pairs: recall 0.5, 0.5, 1.0 / precision 1, 0.5, 2/3. Official 11-point:
    # thresholds 0..0.5 see precision 1, 0.6..1.0 see 2/3 -> 84.85
    assert round(100 * average_precision(tp, scores, 2), 2) == 84.85
    # the area under the envelope, offered as a non-official option: 0.5 * 1 + 0.5 * 2/3
    assert np.isclose(average_precision(tp, scores, 2, "auc"), 0.5 + 1 / 3)
    assert average_precision(np.array([0.0]), np.array([0.5]), 3) == 0.0
    with pytest.raises(DatasetError, match="ap must be"):
        average_precision(tp, scores, 2, "voc")


def test_hoi_map_by_hand(tmp_path, space):
    person, ball, cup = [0, 0, 9, 19], [10, 0, 19, 9], [30, 0, 39, 9]
    gts = [entry("a.jpg", [(person, 1), (ball, 2), ([50, 0, 59, 19], 1), (cup, 3)], [(0, 1, 1), (2, 3, 1)]),
           entry("b.jpg", [(person, 1), (ball, 2)], [(0, 1, 1), (0, 1, 2)])]
    images = read_hoi_annotations(write(tmp_path, gts), space)
    det = lambda h, o, obj, verb, s: {"human_box": h, "object_box": o, "object": obj, "verb": verb, "score": s}  # noqa: E731
    predictions = {
        "a.jpg": [det(person, ball, 2, 1, 0.9),              # hold ball: TP
                  det(person, ball, 2, 1, 0.8),              # the same pair again: FP (already matched)
                  det([50, 0, 59, 19], cup, 3, 1, 0.6),      # hold cup: TP
                  det(person, ball, 2, 2, 0.5)],             # kick ball: FP (no such pair in a.jpg)
        "b.jpg": [det(person, [15, 0, 24, 9], 2, 1, 0.7),    # hold ball, object IoU 1/3: FP
                  det(person, ball, 2, 2, 0.95)],            # kick ball: TP
    }
    m = evaluate_hoi(images, predictions, space, rare=[1], zero_shot="kick-ball")
    # hold-ball: 2 GT, (0.9 TP, 0.8 FP, 0.7 FP): precision 1 up to recall 0.5, then nothing: 6/11;
    # hold-cup: AP 1; kick-ball: 1 GT, (0.95 TP, 0.5 FP): AP 1
    assert m["per_class"] == pytest.approx({"hold ball": 600 / 11, "hold cup": 100.0, "kick ball": 100.0})
    assert np.isclose(m["full"], (600 / 11 + 200) / 3) and m["rare"] == 100.0
    assert np.isclose(m["non_rare"], (600 / 11 + 100) / 2)
    assert m["unseen"] == 100.0 and np.isclose(m["seen"], m["non_rare"]) and m["classes"] == 3
    # max recall: hold ball 1 of 2 pairs, the others all
    assert m["mean_max_recall"] == pytest.approx({"full": 250 / 3, "rare": 100.0, "non_rare": 75.0,
                                                  "unseen": 100.0, "seen": 75.0})
    assert m["ap"] == "11point" and m["mode"] == "def"
    # each detection takes its own best pair, so two people holding balls both count
    two = [entry("c.jpg", [(person, 1), (ball, 2), ([40, 0, 49, 19], 1), ([50, 0, 59, 9], 2)], [(0, 1, 1), (2, 3, 1)])]
    m2 = evaluate_hoi(read_hoi_annotations(write(tmp_path, two), space),
                      {"c.jpg": [det([40, 0, 49, 19], [50, 0, 59, 9], 2, 1, 0.9), det(person, ball, 2, 1, 0.8)]}, space)
    assert m2["per_class"] == {"hold ball": 100.0}
    with pytest.raises(DatasetError, match="not in the annotations"):
        evaluate_hoi(images, {"z.jpg": []}, space)
    with pytest.raises(DatasetError, match="needs human_box"):
        evaluate_hoi(images, {"a.jpg": [{"human_box": person}]}, space)


def test_matching_is_the_official_one(tmp_path, space):
    """No fall-back to the next pair, duplicated pairs, an image without annotations, known-object mode."""
    det = lambda h, o, obj, verb, s: {"human_box": h, "object_box": o, "object": obj, "verb": verb, "score": s}  # noqa: E731
    person_a, person_b, bike = [0, 0, 99, 199], [10, 0, 109, 199], [0, 150, 199, 249]
    # two people on one bike (class hold ball stands in for ride bicycle): detection 1 is person A;
    # detection 2 overlaps A by 97/103 = 0.94 and B by 93/107 = 0.87 -> its best pair is taken: FP
    two = [entry("bike.jpg", [(person_a, 1), (person_b, 1), (bike, 2)], [(0, 2, 1), (1, 2, 1)])]
    shifted = [3, 0, 102, 199]
    assert np.isclose(iou_matrix([shifted], [person_a, person_b]), [[97 / 103, 93 / 107]]).all()
    m = evaluate_hoi(read_hoi_annotations(write(tmp_path, two), space),
                     {"bike.jpg": [det(person_a, bike, 2, 1, 0.9), det(shifted, bike, 2, 1, 0.8)]}, space)
    assert m["per_class"]["hold ball"] == pytest.approx(600 / 11)  # TP, FP against 2 pairs
    assert m["mean_max_recall"]["full"] == 50.0
    # a pair annotated twice: the second copy can never be matched (the first of equal overlaps wins)
    dup = [entry("dup.jpg", [(person_a, 1), (bike, 2)], [(0, 1, 1), (0, 1, 1)])]
    m = evaluate_hoi(read_hoi_annotations(write(tmp_path, dup), space),
                     {"dup.jpg": [det(person_a, bike, 2, 1, 0.9), det(person_a, bike, 2, 1, 0.8)]}, space)
    assert m["per_class"]["hold ball"] == pytest.approx(600 / 11) and m["mean_max_recall"]["full"] == 50.0
    # an image with detections and no annotations: false positives by default, not seen under ko;
    # a detection in an image that has its object in another class stays under ko
    images = [entry("a.jpg", [(person_a, 1), (bike, 2)], [(0, 1, 1)]),
              entry("empty.jpg", [], []),
              entry("kick.jpg", [(person_a, 1), (bike, 2)], [(0, 1, 2)])]
    images = read_hoi_annotations(write(tmp_path, images), space)
    predictions = {"a.jpg": [det(person_a, bike, 2, 1, 0.5)], "empty.jpg": [det(person_a, bike, 2, 1, 0.9)],
                   "kick.jpg": [det(person_a, bike, 2, 2, 0.7)]}
    default = evaluate_hoi(images, predictions, space)
    known = evaluate_hoi(images, {**predictions, "kick.jpg": [det(person_a, bike, 2, 1, 0.95)]}, space, mode="ko")
    assert default["per_class"]["hold ball"] == pytest.approx(50.0)  # FP at 0.9, TP at 0.5: precision 1/2
    assert known["per_class"]["hold ball"] == pytest.approx(50.0)  # kick.jpg has a ball: its FP at 0.95 stays
    assert evaluate_hoi(images, predictions, space, mode="ko")["per_class"]["hold ball"] == 100.0
    with pytest.raises(DatasetError, match="known object"):
        evaluate_hoi(images, predictions, space, mode="known")


def test_the_map_of_a_resample_of_images(tmp_path, space):
    """Matching never looks past an image: mAP from each image's part equals the full evaluation,
    and the gate's paired bootstrap interval of a difference brackets it (and is 0 for no change)."""
    rng = np.random.default_rng(0)
    person, ball, cup = [0, 0, 9, 19], [10, 0, 19, 9], [30, 0, 39, 9]
    gts, before, after = [], {}, {}
    for i in range(40):
        pairs = [(0, 1, 1), (0, 2, 1), (0, 1, 2)][: 1 + i % 3]
        gts.append(entry(f"{i}.jpg", [(person, 1), (ball, 2), (cup, 3)], pairs))
        dets = [{"human_box": person, "object_box": obj, "object": o, "verb": v, "score": float(rng.random())}
                for obj, o, v in ((ball, 2, 1), (cup, 3, 1), (ball, 2, 2))]
        shift = [{**d, "human_box": [6, 0, 15, 19]} if rng.random() < 0.3 else d for d in dets]  # IoU < 0.5: misses
        before[f"{i}.jpg"], after[f"{i}.jpg"] = dets, shift
    images = read_hoi_annotations(write(tmp_path, gts), space)
    parts = {name: image_matches(images, p, space) for name, p in (("before", before), ("after", after))}
    for name, p in (("before", before), ("after", after)):
        assert map_of_images(parts[name], range(len(images))) == pytest.approx(evaluate_hoi(images, p, space)["full"])
    assert paired_map_interval(parts["before"], parts["before"], resamples=200) == [0.0, 0.0]
    low, high = paired_map_interval(parts["before"], parts["after"], resamples=300)
    delta = evaluate_hoi(images, after, space)["full"] - evaluate_hoi(images, before, space)["full"]
    assert low < delta < high < 0  # the shifted boxes lose, and the interval says so


def test_eval_hoi_cli(tmp_path, space, capsys):
    space.save(tmp_path / "hoi_space.json")
    gt = write(tmp_path, [entry("a.jpg", [([0, 0, 9, 19], 1), ([10, 0, 19, 9], 2)], [(0, 1, 1)])])
    pred = write(tmp_path, {"a.jpg": [{"human_box": [0, 0, 9, 19], "object_box": [10, 0, 19, 9], "object": 2,
                                       "verb": 1, "score": 0.5}]}, "pred.json")
    assert main(["eval", "--annotations", str(gt), "--predictions", str(pred), "--zero-shot", "kick-ball",
                 "--out", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "toy mAP / mean max recall (11point AP, mode def" in out and "Full      100.00 / 100.00" in out
    assert "Unseen         - /      -" in out  # the one class with ground truth is seen
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["full"] == 100.0 and written["mean_max_recall"]["full"] == 100.0
    assert main(["eval", "--annotations", str(gt), "--predictions", str(pred), "--mode", "ko", "--ap", "auc",
                 "--out", str(tmp_path / "ko.json")]) == 0
    assert json.loads((tmp_path / "ko.json").read_text())["mode"] == "ko"


def test_synthsitu_hoi(tmp_path):
    from mipd_edge.data.synthsitu.hoi import hoi_space
    from mipd_edge.data.synthsitu.world import VERB_BY_NAME

    out = tmp_path / "hoi"
    assert main(["data", "synth", "--task", "hoi", "--out", str(out), "--trainval", "40", "--test", "12",
                 "--workers", "1"]) == 0
    space = HoiSpace.load(out / "hoi_space.json")
    assert space == hoi_space(0)
    train = read_hoi_annotations(out / "trainval_hico.json", space)
    test = read_hoi_annotations(out / "test_hico.json", space)
    assert len(train) == 40 and len(test) == 12
    for image in train + test:
        assert 1 <= len(image.pairs) <= 2 and None not in image.hoi_classes(space)
        assert all(image.categories[p.subject] == 1 for p in image.pairs)  # the subject is always a person
    raw = json.loads((out / "trainval_hico.json").read_text())
    assert all(h["hoi_category_id"] - 1 == c for e, i in zip(raw, train)
               for h, c in zip(e["hoi_annotation"], i.hoi_classes(space)))
    # unseen verbs: all their classes, and only new combinations of primitives seen verbs show
    unseen_verbs = {space.classes[i][0] for i in space.zero_shot["unseen_verb"]}
    assert set(space.zero_shot["unseen_verb"]) == {i for i, (v, _) in enumerate(space.classes) if v in unseen_verbs}
    assert set(seen_verbs(space, "unseen_verb")).isdisjoint(unseen_verbs)
    seen_primitives = [VERB_BY_NAME[space.verbs[v - 1]].primitives for v in seen_verbs(space, "unseen_verb")]
    for v in unseen_verbs:
        for axis, value in enumerate(VERB_BY_NAME[space.verbs[v - 1]].primitives):
            assert any(p[axis] == value for p in seen_primitives)
    # unseen combinations: every verb and object of them is still seen in another class
    combination = set(space.zero_shot["unseen_combination"])
    seen = [c for i, c in enumerate(space.classes) if i not in combination]
    for i in combination:
        verb, obj = space.classes[i]
        assert any(v == verb for v, _ in seen) and any(o == obj for _, o in seen)
    # deterministic: the same seed writes the same images
    again = tmp_path / "again"
    main(["data", "synth", "--task", "hoi", "--out", str(again), "--trainval", "40", "--test", "12", "--workers", "1"])
    first = sorted((out / "images").iterdir())[3]
    assert (again / "images" / first.name).read_bytes() == first.read_bytes()
