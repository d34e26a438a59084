"""How much to hold the training verbs back against the others, learnt without unseen data.

An HOI student scores unseen verbs from their descriptions alone, while training pushed the
training verbs' scores up: at the ground-truth pairs of unseen interactions it ranks an
unseen verb first far less often over all verbs than among the unseen verbs alone. Calibrated
stacking (Chao et al., ECCV 2016) subtracts one bias from the training verbs' logits. Its
value is model selection, so it is learnt from training verbs only: a *calibration student*
is trained like the real one but without a few training verbs (pseudo-unseen, drawn by
seed), then scored on the real student's held-out training images, which hold those verbs'
pairs, with every training verb in its vocabulary; the bias that maximises the harmonic mean
of the pseudo-seen and pseudo-unseen classes' mAP is the calibration. No unseen verb's name,
description, image or label is involved. The real student is then evaluated with that bias
(``InteractionDecoder(verb_bias=...)``), a row of its own, not part of MIPD.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..context import RunContext
from ..data.hico import classes_of_verbs, dev_holdout, image_dir, seen_verbs, training_images
from ..data.hoi_vocabulary import hoi_vocabulary
from ..deploy.interactions import InteractionDecoder
from ..deploy.preprocess import Preprocess
from ..errors import MipdEdgeError
from ..files import PathLike
from ..hoi_metrics import evaluate_hoi
from ..models.inference import decode_hoi, hoi_outputs
from ..models.store import load_student
from ..text import model_text_encoder
from .config import TrainConfig
from .task import TrainingInputs

log = logging.getLogger(__name__)

PSEUDO_UNSEEN = 4  # training verbs the calibration student does without
BIASES = tuple(float(b) for b in np.arange(0.0, 10.01, 0.5))  # logits, the values tried


def pseudo_unseen_verbs(training: list[int], seed: int, count: int = PSEUDO_UNSEEN) -> list[int]:
    """``count`` of the training verb ids, drawn by seed."""
    if not 0 < count < len(training):
        raise MipdEdgeError(f"a calibration student does without some of the {len(training)} training verbs, "
                            f"not {count}")
    return sorted(int(v) for v in np.random.default_rng([seed, 17]).choice(training, count, replace=False))


def calibrate_seen_bias(data_dir: PathLike, out: PathLike, cfg: TrainConfig, inputs: TrainingInputs,
                        count: int = PSEUDO_UNSEEN, run: RunContext = RunContext()) -> dict[str, Any]:
    """Train the calibration student of ``cfg`` (on ``inputs``, without ``count`` of the
    training verbs) in ``out`` and return the bias it gives (and the harmonic means it was
    chosen from)."""
    from .distill import distill

    data_dir, progress = Path(data_dir), run.progress
    space, images = training_images(data_dir, inputs.zero_shot)
    training_verbs = seen_verbs(space, inputs.zero_shot)
    pseudo = pseudo_unseen_verbs(training_verbs, cfg.seed, count)
    distill(data_dir, out, cfg, replace(inputs, hold_out_verbs=tuple(pseudo)), run)
    model, info = load_student(out)
    dev = dev_holdout(images, cfg.seed)[1]  # never trained on: the calibration student's training images are fewer
    vocab = hoi_vocabulary(space, training_verbs, model_text_encoder(info))
    outputs = hoi_outputs(model, dev, image_dir(data_dir, "trainval"), Preprocess.from_json(info["preprocess"]),
                          progress=progress)
    pseudo_names = {space.verbs[v - 1] for v in pseudo}
    seen_classes = classes_of_verbs(space, [v for v in training_verbs if v not in pseudo])
    unseen_classes = classes_of_verbs(space, pseudo)
    harmonic = []
    for bias in BIASES:
        decoder = InteractionDecoder(vocab, float(model.verb_scale()), float(model.noun_scale()), space,
                                     verb_bias={v: bias for v in vocab.verbs if v not in pseudo_names})
        ap = evaluate_hoi(dev, decode_hoi(outputs, decoder), space)["per_class"]  # classes with test pairs
        seen, unseen = (float(np.mean([ap[n] for n in map(space.class_name, classes) if n in ap] or [0.0]))
                        for classes in (seen_classes, unseen_classes))
        harmonic.append(2 * seen * unseen / (seen + unseen) if seen + unseen > 0 else 0.0)
    best = BIASES[int(np.argmax(harmonic))]
    log.info("seen-verb bias %.1f (pseudo-unseen %s): harmonic mAP %.2f against %.2f without", best,
             sorted(pseudo_names), max(harmonic), harmonic[0])
    return {"bias": best, "pseudo_unseen": sorted(pseudo_names), "biases": list(BIASES), "harmonic_map": harmonic,
            "images": len(dev)}


__all__ = ["calibrate_seen_bias", "pseudo_unseen_verbs"]
