import json

import pytest

from mipd_edge import RoleValue, Situation, VerbCandidate
from mipd_edge.errors import DatasetError


def test_json_round_trip_matches_predictions_format():
    s = Situation(
        (VerbCandidate("lifting", 0.9, {"agent": RoleValue("n1", "man", 0.8, [1.0, 2.0, 30.0, 40.0]),
                                        "place": RoleValue("", "nothing", 0.6, None)}),
         VerbCandidate("holding", 0.05)),
        gt_verb_roles={"agent": RoleValue("n1", "man", 0.8, [1.0, 2.0, 30.0, 40.0])})
    assert (s.verb, s.score, list(s.roles)) == ("lifting", 0.9, ["agent", "place"])
    obj = json.loads(json.dumps(s.to_json()))
    assert obj["verbs"][0]["roles"]["place"]["box"] is None
    assert obj["verbs"][0]["roles"]["agent"]["noun"] == "n1"
    assert Situation.from_json(obj) == s
    assert "lifting" in str(s) and "agent=man" in str(s)


def test_swig_no_box_is_none():
    s = Situation.from_json({"verbs": [{"verb": "v", "roles": {"r": {"noun": "", "box": [-1, -1, -1, -1]}}}]})
    assert s.roles["r"].box is None and s.score == 0.0


def test_needs_a_candidate():
    with pytest.raises(ValueError):
        Situation(())
    with pytest.raises(DatasetError):
        Situation.from_json({"verbs": []})
