import json
import subprocess
import sys

import pytest

from mipd_edge.data.split import apply_split, build_split, load_split, training_verbs
from mipd_edge.errors import DatasetError

VERBS = [f"verb{i:02d}" for i in range(50)]


def test_fractions_and_determinism():
    a = build_split(VERBS, 0.2, 0.2, 7, seed=5)
    assert (len(a["unseen"]), len(a["rare"]), len(a["seen"])) == (10, 10, 30)
    assert set(a["unseen"]) | set(a["rare"]) | set(a["seen"]) == set(VERBS)
    assert a == build_split(reversed(VERBS), 0.2, 0.2, 7, seed=5)  # input order does not matter
    assert a != build_split(VERBS, 0.2, 0.2, 7, seed=6)
    assert a["params"] == {"unseen_frac": 0.2, "rare_frac": 0.2, "rare_images": 7, "seed": 5}
    assert set(training_verbs(a)) == set(a["seen"]) | set(a["rare"])


def test_accept_condition_is_honoured():
    split = build_split(VERBS, 0.2, 0.2, seed=0, accept=lambda s: "verb00" in s["unseen"])
    assert "verb00" in split["unseen"]
    with pytest.raises(DatasetError, match="condition"):
        build_split(VERBS, 0.2, 0.2, seed=0, accept=lambda s: False, max_tries=3)


@pytest.mark.parametrize("kwargs", [{"unseen_frac": 0.6, "rare_frac": 0.5}, {"unseen_frac": -0.1},
                                    {"rare_images": 0}])
def test_bad_parameters(kwargs):
    with pytest.raises(DatasetError):
        build_split(VERBS, **kwargs)


class A:
    def __init__(self, verb):
        self.verb = verb


def test_apply_split_drops_unseen_and_caps_rare():
    ann = {f"{v}_{i}.jpg": A(v) for v in ("a", "b", "c") for i in range(5)}
    split = {"seen": ["a"], "rare": ["b"], "unseen": ["c"], "params": {"rare_images": 2}}
    kept = apply_split(ann, split)
    assert sum(a.verb == "a" for a in kept.values()) == 5
    assert sorted(n for n, a in kept.items() if a.verb == "b") == ["b_0.jpg", "b_1.jpg"]
    assert not any(a.verb == "c" for a in kept.values())


def test_load_split_validates(tmp_path):
    with pytest.raises(DatasetError, match="more than one split"):
        load_split({"seen": ["a"], "rare": ["a"], "unseen": []})
    with pytest.raises(DatasetError, match="'unseen' must be a list"):
        load_split({"seen": ["a"], "rare": []})
    (tmp_path / "s.json").write_text("[1, 2]")
    with pytest.raises(DatasetError, match="s.json"):
        load_split(tmp_path / "s.json")


def test_split_cli(tiny_files, tmp_path):
    out = tmp_path / "splits.json"
    r = subprocess.run([sys.executable, "-m", "mipd_edge.cli", "data", "split", "--space",
                        str(tiny_files / "imsitu_space.json"), "--train", str(tiny_files / "train.json"),
                        "--out", str(out), "--unseen-frac", "0.5", "--rare-frac", "0", "--seed", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    split = json.loads(out.read_text())
    assert len(split["unseen"]) == 1 and len(split["seen"]) == 1 and split["params"]["seed"] == 1
