"""Who is who across frames: an HOI source's people and objects tracked, each interaction with
an identity and its verb steadied over that identity's frames.

An HOI answer holds one situation per interaction (agent and item, each with a box), anew on
every frame. ``InteractionTracks`` follows the boxes with ByteTrack (Roboflow's ``trackers``
package, the ``tracks`` extra): one tracker for the people, one per object category, fed the
frame's boxes with near-duplicates merged (several interactions of one person give one
person). An interaction is a (person track, object track) pair: it gets an id of its own the
first time the pair is seen, and its verb is steadied over the pair's frames by a
``VerbSmoother`` of its own, so two people doing different things never share a vote. The boxes
and roles shown are always this frame's.

Every interaction the Predictor reports is fed as a confident detection: it has already kept
only those above its threshold, so ByteTrack's second stage (recovering low-score boxes) has
nothing to recover. A track is confirmed on its second frame; until then its interaction is
answered as it is, without ids. Ids count from 0, per source (people's and each object
category's tracks have their own counts; interactions theirs).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np

from ...config import SmoothingConfig
from ...errors import require
from ...situation import Interactions, RoleValue
from .smoothing import VerbSmoother

SAME_BOX_IOU = 0.7  # boxes of one category overlapping this much are one thing
LOST_FRAMES = 30  # frames a track (and its interaction's vote) outlives its last sighting


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``[x1, y1, x2, y2]`` boxes, ``(len(a), len(b))``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def merge_boxes(boxes: np.ndarray) -> np.ndarray:
    """Each box's group: boxes (best first) overlapping an earlier kept one by ``SAME_BOX_IOU`` join it."""
    group = np.full(len(boxes), -1)
    iou = box_iou(boxes, boxes)
    for i in range(len(boxes)):
        if group[i] < 0:
            group[(group < 0) & (iou[i] >= SAME_BOX_IOU)] = i
    return group


class InteractionTracks:
    """One HOI source's tracks; called on each of its answers, in order."""

    def __init__(self, smoothing: SmoothingConfig = SmoothingConfig()):
        self.trackers_module = require("trackers", "tracks", "Tracking people and objects in an HOI stream")
        self.supervision = require("supervision", "tracks", "Tracking people and objects in an HOI stream")
        self.smoothing = smoothing
        self.trackers: dict[str, object] = {}  # category noun -> its ByteTrack
        self.pairs: dict[tuple, int] = {}  # (person track, object noun, object track) -> interaction id
        self.smoothers: dict[int, VerbSmoother] = {}
        self.last_seen: dict[int, int] = {}
        self.tick = self.interactions = 0

    def __call__(self, answer: Interactions) -> Interactions:
        """``answer`` with track ids on each interaction and on its agent and item, verbs smoothed per interaction."""
        self.tick += 1
        ids = {role: self._track(answer, role) for role in ("agent", "item")}
        out = Interactions()
        for i, situation in enumerate(answer):
            person, thing = ids["agent"][i], ids["item"][i]
            roles = dict(situation.roles)
            for role, track in (("agent", person), ("item", thing)):
                if role in roles:
                    roles[role] = replace(roles[role], track=track)
            if person is None or thing is None:  # not followed: as answered
                out.append(replace(situation, candidates=(replace(situation.candidates[0], roles=roles),)))
                continue
            key = (person, situation.roles["item"].noun, thing)
            if key not in self.pairs:
                self.pairs[key] = self.interactions
                self.interactions += 1
            interaction = self.pairs[key]
            self.last_seen[interaction] = self.tick
            best = self.smoothers.setdefault(interaction, VerbSmoother(self.smoothing))(situation).candidates[0]
            out.append(replace(situation, candidates=(replace(best, roles=roles),), track=interaction))
        self._forget()
        return out

    def _track(self, answer: Interactions, role: str) -> list[Optional[int]]:
        """Each interaction's ``role`` box's track id (None where it has no box or no track yet)."""
        found: list[Optional[int]] = [None] * len(answer)
        by_category: dict[str, list[int]] = {}
        for i, situation in enumerate(answer):
            value: Optional[RoleValue] = situation.roles.get(role)
            if value is not None and value.box is not None:
                by_category.setdefault(value.noun, []).append(i)
        for category in set(self.trackers) | set(by_category):  # unseen categories still age their tracks
            members = by_category.get(category, [])
            boxes = np.array([answer[i].roles[role].box for i in members], np.float32).reshape(-1, 4)
            group = merge_boxes(boxes)
            heads = np.unique(group)
            detections = self.supervision.Detections(xyxy=boxes[heads], data={"head": heads})
            tracked = self._tracker(category).update(detections)
            track_of = {int(h): int(t) for h, t in zip(tracked.data.get("head", ()), tracked.tracker_id) if t >= 0}
            for member, g in zip(members, group):
                found[member] = track_of.get(int(g))
        return found

    def _tracker(self, category: str):
        if category not in self.trackers:
            self.trackers[category] = self.trackers_module.ByteTrackTracker(
                lost_track_buffer=LOST_FRAMES, minimum_consecutive_frames=1)
        return self.trackers[category]

    def _forget(self) -> None:
        """Interactions unseen for longer than a track outlives its last sighting lose their vote."""
        gone = [i for i, seen in self.last_seen.items() if self.tick - seen > LOST_FRAMES]
        for interaction in gone:
            del self.last_seen[interaction], self.smoothers[interaction]
        if gone:
            self.pairs = {k: v for k, v in self.pairs.items() if v in self.last_seen}


__all__ = ["InteractionTracks"]
