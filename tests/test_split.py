import json
import subprocess
import sys

import pytest

from helpers import ov_swig_files
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
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    split = json.loads(out.read_text())
    assert len(split["unseen"]) == 1 and len(split["seen"]) == 1 and split["params"]["seed"] == 1


def test_a_published_split_from_its_files_and_from_a_verb_list(synth_dir, tmp_path):
    from mipd_edge.data.swig import read_annotations, read_space

    space = read_space(synth_dir / "space.json")
    verbs = sorted(space.frames)
    unseen, rare = verbs[:3], verbs[3:6]
    folder = ov_swig_files(synth_dir, tmp_path / "ov", unseen, rare)
    cli = [sys.executable, "-m", "mipd_edge.cli", "data", "split", "--space", str(synth_dir / "space.json")]
    r = subprocess.run(cli + ["--from-files", str(folder), "--out", str(tmp_path / "split.json")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    split = load_split(tmp_path / "split.json")
    assert split["unseen"] == unseen and split["rare"] == rare
    assert split["seen"] == verbs[6:] and split["params"]["rare_images"] == 2
    assert split["params"]["training_images"] == {v: 2 for v in rare}
    # the reader takes the captioned files and ignores the extra fields
    train = read_annotations(folder / "train_L10_with_obj_cap_refined.json", space)
    assert {a.verb for a in train.values()} == set(verbs[3:])
    # a training file that holds an unseen verb is no open-vocabulary split
    leaky = ov_swig_files(synth_dir, tmp_path / "leaky", unseen, rare, leak=True)
    r = subprocess.run(cli + ["--from-files", str(leaky), "--out", str(tmp_path / "leaky.json")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "unseen verbs" in r.stderr and not (tmp_path / "leaky.json").exists()
    # or just a list of unseen verbs: rare ones are drawn from the rest
    (tmp_path / "unseen.txt").write_text("# the published unseen verbs\n" + "\n".join(unseen) + "\n")
    r = subprocess.run(cli + ["--train", str(synth_dir / "train.json"), "--unseen-verbs", str(tmp_path / "unseen.txt"),
                              "--out", str(tmp_path / "listed.json"), "--rare-frac", "0.2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    listed = load_split(tmp_path / "listed.json")
    assert listed["unseen"] == unseen and len(listed["rare"]) == round(0.2 * len(verbs))
    assert not set(listed["rare"]) & set(unseen) and set(listed["seen"]) | set(listed["rare"]) == set(verbs[3:])
