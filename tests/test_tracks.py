"""HOI tracks: people and objects followed with ByteTrack, an id per interaction, its verb
smoothed over its own frames."""

import json

import pytest

from mipd_edge.config import SmoothingConfig
from mipd_edge.deploy.streams.tracks import InteractionTracks, merge_boxes
from mipd_edge.situation import Interactions, RoleValue, Situation, VerbCandidate

pytest.importorskip("trackers")


def interaction(verb, score, person, thing, noun="n_cup"):
    return Situation((VerbCandidate(verb, score, {"agent": RoleValue("n_person", "person", 1.0, person),
                                                  "item": RoleValue(noun, noun, score, thing)}),))


def scene(frame, verb):
    """Two people walking towards each other: one holding a cup (``verb``) with a bag by him,
    the other riding a bike."""
    x = 10 + 3 * frame
    return Interactions([interaction(verb, 0.8, [x, 10, x + 40, 90], [x + 30, 40, x + 50, 60]),
                         interaction("ride", 0.7, [200 - x, 10, 240 - x, 90], [190 - x, 60, 250 - x, 100], "n_bike"),
                         # the same person as the first, seen by another slot a pixel away
                         interaction("carry", 0.5, [x + 1, 11, x + 41, 90], [x + 60, 20, x + 80, 40], "n_bag")])


def test_each_interaction_keeps_its_id_and_its_own_steady_verb():
    tracks = InteractionTracks()
    verbs = ["hold", "hold", "hold", "drink", "hold", "hold", "drink", "drink", "drink", "drink", "drink"]
    answers = [tracks(scene(f, v)) for f, v in enumerate(verbs)]
    assert all(s.track is None and s.roles["agent"].track is None for s in answers[0])  # confirmed on frame 2
    ids = [[s.track for s in a] for a in answers[1:]]
    assert all(row == ids[0] for row in ids) and len(set(ids[0])) == 3
    people = [[s.roles["agent"].track for s in a] for a in answers[1:]]
    # the two boxes of the first person are one person; the rider is another
    assert all(row[0] == row[2] != row[1] for row in people)
    cup = [a[0].verb for a in answers]
    assert cup[3] == "hold"  # a one-frame flicker never wins the vote
    assert cup[-1] == "drink" and cup.index("drink") - verbs.index("drink", 4) <= 3  # a true change wins soon
    assert [a[1].verb for a in answers] == ["ride"] * len(verbs)  # the rider's vote is his own
    line = json.loads(json.dumps(answers[-1].to_json()))
    assert line["interactions"][0]["track"] == ids[0][0]
    assert line["interactions"][0]["verbs"][0]["roles"]["item"]["track"] == answers[-1][0].roles["item"].track
    assert Situation.from_json(line["interactions"][0]).track == ids[0][0]


def test_tracks_are_followed_without_smoothing_and_forgotten_when_gone():
    tracks = InteractionTracks(SmoothingConfig(smooth="off"))
    answers = [tracks(scene(f, "hold" if f % 2 else "drink")) for f in range(4)]
    assert [a[0].verb for a in answers] == ["drink", "hold", "drink", "hold"]  # as answered
    first = answers[-1][0].track
    for _ in range(40):  # nobody in view for longer than a track outlives its last sighting
        assert tracks(Interactions()) == []
    assert not tracks.smoothers
    again = [tracks(scene(f, "hold")) for f in range(3)]
    assert again[-1][0].track is not None and again[-1][0].track != first  # a new interaction, a new id


def test_near_duplicate_boxes_are_one_detection():
    import numpy as np

    boxes = np.array([[0, 0, 10, 10], [0.5, 0, 10.5, 10], [20, 20, 30, 30], [0, 0, 4, 10]], np.float32)
    assert merge_boxes(boxes).tolist() == [0, 0, 2, 3]


def test_a_track_field_must_be_an_integer():
    from mipd_edge.errors import DatasetError

    with pytest.raises(DatasetError, match="'track' must be an integer"):
        Situation.from_json({"verbs": [{"verb": "hold"}], "track": "7"})
