import json

import numpy as np
import pytest

from helpers import TINY_ANNOTATIONS, TINY_SPACE, write_json
from mipd_edge.data.swig import SituDataset, read_annotations, read_space
from mipd_edge.errors import DatasetError


def test_reads_space_and_annotations(tiny_files):
    ds = SituDataset(tiny_files, "train")
    assert ds.space.frames["lifting"].roles == ("agent", "item", "place")
    assert ds.space.nouns["n2"].glosses == ("box", "carton")
    assert len(ds) == 3
    a = ds.annotations["img1.jpg"]
    assert a.boxes == {"agent": [0, 0, 10, 10], "item": [20, 20, 30, 30], "place": None}
    assert a.nouns("agent") == {"n1", "n4"} and a.nouns("place") == {"n3", ""}
    sample = ds[0]
    assert sample.image.shape == (40, 40, 3) and sample.image.dtype == np.uint8
    assert [s.name for s in ds] == ["img1.jpg", "img2.jpg", "img3.jpg"]


def test_annotation_round_trip(tiny_files, tmp_path):
    from mipd_edge.data.swig import write_annotations

    space = read_space(tiny_files / "imsitu_space.json")
    ann = read_annotations(tiny_files / "train.json", space)
    write_annotations(tmp_path / "copy.json", ann)
    assert json.loads((tmp_path / "copy.json").read_text()) == TINY_ANNOTATIONS


def broken(entry_changes=None, frame_changes=None):
    ann = json.loads(json.dumps(TINY_ANNOTATIONS))
    ann["img1.jpg"].update(entry_changes or {})
    if frame_changes:
        ann["img1.jpg"]["frames"][1] = frame_changes
    return ann


@pytest.mark.parametrize("ann, message", [
    (broken({"verb": "flying"}), "unknown verb 'flying'"),
    (broken(frame_changes={"agent": "n99", "item": "n2", "place": ""}), "unknown noun 'n99'"),
    (broken(frame_changes={"agent": "n1", "place": ""}), "frame 1 has roles"),
    (broken({"bb": {"agent": [0, 0, 1, 1], "wing": [0, 0, 1, 1]}}), "roles \\['wing'\\]"),
    (broken({"bb": {"agent": [0, 0, 1]}}), "box of 'agent'"),
    (broken({"width": -3}), "positive integers"),
    (broken({"frames": []}), "non-empty list"),
])
def test_bad_annotations_name_file_and_entry(tiny_files, ann, message):
    path = write_json(tiny_files / "train.json", ann)
    with pytest.raises(DatasetError, match=message) as err:
        read_annotations(path, read_space(tiny_files / "imsitu_space.json"))
    assert "train.json" in str(err.value) and "img1.jpg" in str(err.value)


def test_malformed_json_and_space(tmp_path):
    (tmp_path / "space.json").write_text('{"verbs": {')
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_space(tmp_path / "space.json")
    space = json.loads(json.dumps(TINY_SPACE))
    space["verbs"]["lifting"]["order"].append("tool")
    with pytest.raises(DatasetError, match="lifting.*'tool'"):
        read_space(write_json(tmp_path / "space.json", space))
    with pytest.raises(DatasetError, match="not found"):
        read_space(tmp_path / "nope.json")


def test_missing_and_corrupt_images(tiny_files):
    (tiny_files / "images" / "img2.jpg").unlink()
    with pytest.raises(DatasetError, match="1 images missing.*img2.jpg"):
        SituDataset(tiny_files, "train")
    (tiny_files / "images" / "img2.jpg").write_bytes(b"not a jpeg")
    ds = SituDataset(tiny_files, "train")
    with pytest.raises(DatasetError, match="img2.jpg"):
        ds[1]
    assert ds[2].name == "img3.jpg"  # the dataset still serves the next sample


def test_training_view_applies_split(tiny_files):
    split = {"seen": ["lifting"], "rare": [], "unseen": ["running"], "params": {"rare_images": 1}}
    train = SituDataset(tiny_files, "train", ov_split=split)
    assert set(train.names) == {"img1.jpg", "img2.jpg"}
    split = {"seen": [], "rare": ["lifting"], "unseen": [], "params": {"rare_images": 1}}
    assert SituDataset(tiny_files, "train", ov_split=split).names == ["img1.jpg", "img3.jpg"]
