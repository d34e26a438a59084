"""HOI data seen as situations: the vocabulary of an HOI space, and each training
interaction cropped into a one-situation image in SWiG format.

The crops are what lets HOI distillation reuse MIPD unchanged: the teacher, the
rationale generator (JRG) and NMPA all work on SWiG datasets, so each human-object pair
becomes one (verb; agent, item) situation around its two boxes. Only training pairs of
seen classes are cropped (``drop_unseen`` first), so the honesty rule holds for the
teacher targets and rationales as it does for the labels.

``unlabelled`` crops are the other human-object pairs of a training image: every person
box of a labelled pair with every object box of a labelled pair, where the two are not
already a labelled pair. They carry no verb: the teacher judges them (an unseen
interaction whose labels were removed is among them, as are people and things that do
nothing together), and HOI distillation at every pair (``MipdConfig.pairs = "all"``) passes
that judgment on. Only boxes of labelled pairs are used, so nothing of an unseen class's
annotation, not even where its boxes are, reaches them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import cv2
import numpy as np

from ..deploy.image import load_image
from ..files import PathLike, write_json
from ..progress import progress_bar
from .hico import PERSON, HoiImage, HoiSpace, seen_verbs
from .hoi_vocabulary import ROLES, hoi_situation_space, object_noun
from .split import SPLIT_FILE, write_split
from .swig import write_space

log = logging.getLogger(__name__)

# context around the pair, as a fraction of its union box: the teacher knows whole scenes,
# and tight crops look little like them (SynthSitu teacher top-1 on the crops: 34% at 0.15,
# 57% at 0.6, 52% at 1.2)
CROP_MARGIN = 0.6
UNLABELLED = "unlabelled"  # the folder (and .json index) of the unlabelled pairs' crops


def pair_boxes(image: HoiImage) -> dict[tuple[int, int], list[int]]:
    """Each (subject, object) box pair of an image with the verb ids it carries."""
    out: dict[tuple[int, int], list[int]] = {}
    for p in image.pairs:
        out.setdefault((p.subject, p.object), []).append(p.verb)
    return out


def crop_name(image: HoiImage, pair: tuple[int, int], verb: Optional[int] = None) -> str:
    """The crop of an image's (subject, object) box pair, named by its boxes so that the name
    holds whichever other pairs are dropped; ``verb`` tells apart the crops of a pair with
    several verbs."""
    return f"{Path(image.file_name).stem}_pair_h{pair[0]}_o{pair[1]}{'' if verb is None else f'_v{verb}'}.jpg"


def unlabelled_pairs(image: HoiImage) -> list[tuple[int, int]]:
    """The (person box, object box) combinations of an image's labelled pairs' boxes that
    are no labelled pair themselves."""
    labelled = pair_boxes(image)
    humans = sorted({s for s, _ in labelled})
    objects = sorted({o for _, o in labelled})
    return [(s, o) for s in humans for o in objects if s != o and (s, o) not in labelled]


def unlabelled_crop_name(image: HoiImage, subject: int, obj: int) -> str:
    return f"{Path(image.file_name).stem}_h{subject}_o{obj}.jpg"


def crop_pair(pixels: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """A pair's crop (its union box and ``CROP_MARGIN`` of context) and its size and role
    boxes in the crop's pixels, as a SWiG annotation holds them."""
    h, w = pixels.shape[:2]
    x1, y1 = boxes[:, :2].min(0)
    x2, y2 = boxes[:, 2:].max(0)
    mx, my = (x2 - x1) * CROP_MARGIN, (y2 - y1) * CROP_MARGIN
    cx1, cy1 = int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my)))
    cx2, cy2 = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
    local = [[float(b[0] - cx1), float(b[1] - cy1), float(b[2] - cx1), float(b[3] - cy1)] for b in boxes]
    return pixels[cy1:cy2, cx1:cx2], {"width": cx2 - cx1, "height": cy2 - cy1, "bb": dict(zip(ROLES, local))}


def write_pair_situations(images: Sequence[HoiImage], image_dir: PathLike, space: HoiSpace, out: PathLike,
                          zero_shot: Optional[str], progress: bool = True, unlabelled: bool = False) -> Path:
    """Crop every training pair into a SWiG dataset at ``out`` (train split only; a pair
    with several verbs gives one crop per verb); with ``unlabelled``, also the unlabelled
    pairs, into ``out/unlabelled/`` indexed by ``out/unlabelled.json``. Returns ``out``."""
    out, image_dir = Path(out), Path(image_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    if unlabelled:
        (out / UNLABELLED).mkdir(exist_ok=True)
    situations = hoi_situation_space(space)
    write_space(out / "space.json", situations)
    verbs = {space.verbs[v - 1] for v in seen_verbs(space, zero_shot)}
    write_split(out / SPLIT_FILE, {"seen": sorted(verbs), "rare": [], "unseen": sorted(set(space.verbs) - verbs),
                                      "params": {"hoi_zero_shot": zero_shot}})
    annotations, others = {}, {}
    quality = [cv2.IMWRITE_JPEG_QUALITY, 95]
    for image in progress_bar(images, desc="pair crops", unit="img", enabled=progress):
        pixels = load_image(image_dir / image.file_name)
        for (s, o), pair_verbs in pair_boxes(image).items():
            crop, placed = crop_pair(pixels, image.boxes[[s, o]])
            frame = {"agent": object_noun(PERSON), "item": object_noun(image.categories[o])}
            for verb_id in pair_verbs:
                name = crop_name(image, (s, o), verb_id if len(pair_verbs) > 1 else None)
                cv2.imwrite(str(out / "images" / name), crop, quality)
                annotations[name] = {"verb": space.verbs[verb_id - 1], **placed, "frames": [frame] * 3}
        for s, o in unlabelled_pairs(image) if unlabelled else ():
            crop, placed = crop_pair(pixels, image.boxes[[s, o]])
            name = unlabelled_crop_name(image, s, o)
            cv2.imwrite(str(out / UNLABELLED / name), crop, quality)
            others[name] = {"image": image.file_name, "pair": [s, o], **placed}
    write_json(out / "train.json", annotations, indent=None)
    write_json(out / "dev.json", {}, indent=None)
    if unlabelled:
        write_json(out / f"{UNLABELLED}.json", others, indent=None)
    log.info("pair situations: %d crops (and %d unlabelled pairs) of %d images -> %s", len(annotations), len(others),
             len(images), out)
    return out
