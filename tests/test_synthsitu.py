import json
import subprocess
import sys
from collections import Counter

from mipd_edge.data.split import load_split
from mipd_edge.data.swig import SituDataset
from mipd_edge.data.synthsitu import NOUNS, VERBS, confusable_verbs, covered_by_seen, generate, make_image
from mipd_edge.data.synthsitu.generate import SynthConfig
from mipd_edge.data.synthsitu.world import POSE_TEXT, RELATION_TEXT, nouns_of, primitive_distance


def test_world_is_rich_enough():
    assert len(VERBS) >= 30
    assert len(NOUNS) >= 40 and len(nouns_of("place")) >= 5
    assert len({v.primitives for v in VERBS}) == len(VERBS), "two verbs would look the same"
    assert all(2 <= len(v.roles) <= 6 for v in VERBS)
    # every verb has a confusable neighbour that differs in one or two primitives
    assert all(confusable_verbs(v.name) for v in VERBS)
    assert all(primitive_distance(v.name, c) <= 2 for v in VERBS for c in confusable_verbs(v.name))
    assert set(confusable_verbs("throwing")) >= {"passing", "shooting"}


def test_definitions_describe_primitives():
    for v in VERBS:
        d = v.definition()
        assert POSE_TEXT[v.pose] in d
        if v.relation != "none":
            assert RELATION_TEXT[v.relation] in d


def test_dataset_is_valid_swig(synth_dir):
    for split in ("train", "dev", "test"):
        ds = SituDataset(synth_dir, split)  # reading validates every entry against the space
        for name, a in ds.annotations.items():
            assert len(a.frames) == 3
            for role, box in a.boxes.items():
                if role == "place":
                    assert box is None
                else:
                    x1, y1, x2, y2 = box
                    assert 0 <= x1 < x2 <= a.width and 0 <= y1 < y2 <= a.height, (name, role, box)
    sample = SituDataset(synth_dir, "dev")[0]
    assert sample.image.shape == (sample.annotation.height, sample.annotation.width, 3)


def test_annotators_disagree_realistically(synth_dir):
    ds = SituDataset(synth_dir, "train")
    disagreements = sum(len(a.nouns(r)) > 1 for a in ds.annotations.values() for r in a.boxes)
    roles = sum(len(a.boxes) for a in ds.annotations.values())
    assert 0.1 < disagreements / roles < 0.7


def test_dev_and_test_balanced_over_all_verbs(synth_dir):
    dev = json.loads((synth_dir / "dev.json").read_text())
    assert Counter(e["verb"] for e in dev.values()) == Counter({v.name: 1 for v in VERBS})
    test = json.loads((synth_dir / "test.json").read_text())
    assert set(Counter(e["verb"] for e in test.values()).values()) == {2}


def test_split_unseen_verbs_are_new_combinations_of_seen_primitives(synth_dir):
    split = load_split(synth_dir / "splits.json")
    n = len(VERBS)
    assert len(split["unseen"]) == round(0.2 * n) and len(split["rare"]) == round(0.2 * n)
    assert covered_by_seen(split)
    train = SituDataset(synth_dir, "train", ov_split=split)
    verbs = Counter(a.verb for a in train.annotations.values())
    assert not set(verbs) & set(split["unseen"])
    assert all(verbs[v] <= split["params"]["rare_images"] for v in split["rare"])


def test_deterministic_for_a_seed_whatever_the_workers(tmp_path):
    a = generate(tmp_path / "a", SynthConfig(seed=1, train=120, dev=48, test=48, image_size=96, workers=2),
                 progress=False)
    generate(tmp_path / "b", SynthConfig(seed=1, train=120, dev=48, test=48, image_size=96, workers=1), progress=False)
    generate(tmp_path / "c", SynthConfig(seed=2, train=120, dev=48, test=48, image_size=96, workers=1), progress=False)
    assert a["train"] == 120
    for f in ("train.json", "dev.json", "test.json", "splits.json", "space.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    names = sorted(p.name for p in (tmp_path / "a" / "images").iterdir())
    assert len(names) == 216
    assert all((tmp_path / "a" / "images" / n).read_bytes() == (tmp_path / "b" / "images" / n).read_bytes()
               for n in names)
    assert (tmp_path / "a" / "train.json").read_bytes() != (tmp_path / "c" / "train.json").read_bytes()


def test_boxes_cover_what_was_drawn():
    """The item is drawn inside its box: pixels there differ from the same scene without it."""
    image, entry = make_image(0, "train", 7, "holding", 192)
    x1, y1, x2, y2 = entry["bb"]["item"]
    ax1, ay1, ax2, ay2 = entry["bb"]["agent"]
    assert (x2 - x1) * (y2 - y1) > 20 and (ax2 - ax1) * (ay2 - ay1) > 200
    assert image[y1:y2, x1:x2].std() > 10  # not flat background


def test_synth_cli(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mipd_edge.cli", "data", "synth", "--out", str(tmp_path / "d"),
                        "--train", "60", "--dev", "48", "--test", "48", "--image-size", "96", "--workers", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "60 train / 48 dev / 48 test" in r.stdout
    assert len(list((tmp_path / "d" / "images").glob("*.jpg"))) == 156
