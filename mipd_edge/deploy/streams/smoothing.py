"""Steady answers over time: a source's verb smoothed over its frames.

Frame by frame, a model's best verb flickers between close candidates, which a dashboard or an
alert cannot use. ``VerbSmoother`` keeps, per source, a running score per verb and answers the
verb that leads it (``SmoothingConfig``): ``vote`` (the most frequent best verb over the last
``smooth_window`` frames, the newest winning a tie; the default, as its delay is bounded by the
window) or ``ema`` (an exponential moving average of each verb's probability; a verb missing
from a frame's top-k counts as 0 there). A true change wins once the new verb
leads the running score, a few frames later; a one-frame flicker never does.

The roles shown with a smoothed verb are those the model predicted for it: this frame's where
it was this frame's best verb, else those of the last frame where it was (the decoder only
decodes the best verb's roles), else none.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import replace
from typing import Mapping

from ...config import SmoothingConfig
from ...situation import RoleValue, Situation, VerbCandidate

KEEP = 1e-4  # running scores below this are forgotten


class VerbSmoother:
    """One source's running verb scores; called on each of its answers, in order."""

    def __init__(self, cfg: SmoothingConfig = SmoothingConfig()):
        self.cfg = cfg
        self.scores: dict[str, float] = {}
        self.votes: deque[str] = deque(maxlen=cfg.smooth_window)
        self.roles: dict[str, Mapping[str, RoleValue]] = {}

    def __call__(self, situation: Situation) -> Situation:
        """``situation`` with its candidates ranked by the running scores (which replace theirs)."""
        if self.cfg.smooth == "off":
            return situation
        best = situation.candidates[0]
        self.roles[best.verb] = best.roles
        ranked = self._ema(situation) if self.cfg.smooth == "ema" else self._vote(best.verb)
        now = {c.verb: c for c in situation.candidates}
        candidates = tuple(VerbCandidate(verb, score, now[verb].roles if verb in now and now[verb].roles
                                         else self.roles.get(verb, {}))
                           for verb, score in ranked[:len(situation.candidates)])
        return replace(situation, candidates=candidates)

    def _ema(self, situation: Situation) -> list[tuple[str, float]]:
        a = self.cfg.smooth_alpha
        for verb in self.scores:
            self.scores[verb] *= 1 - a
        for c in situation.candidates:
            self.scores[c.verb] = self.scores.get(c.verb, 0.0) + a * c.score
        self.scores = {v: s for v, s in self.scores.items() if s >= KEEP}
        return sorted(self.scores.items(), key=lambda item: -item[1])

    def _vote(self, verb: str) -> list[tuple[str, float]]:
        self.votes.append(verb)
        counts = Counter(self.votes)
        newest = {v: i for i, v in enumerate(self.votes)}  # a tie goes to the verb voted for last
        order = sorted(counts, key=lambda v: (-counts[v], -newest[v]))
        return [(v, counts[v] / len(self.votes)) for v in order]


__all__ = ["VerbSmoother"]
