"""HOI data seen as situations: the vocabulary of an HOI space, and each training
interaction cropped into a one-situation image in SWiG format.

The crops are what lets HOI distillation reuse MIPD unchanged: the teacher, the
rationale generator (JRG) and NMPA all work on SWiG datasets, so each human-object pair
becomes one (verb; agent, item) situation around its two boxes. Only training pairs of
seen classes are cropped (``drop_unseen`` first), so the honesty rule holds for the
teacher targets and rationales as it does for the labels.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

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


def pair_boxes(image: HoiImage) -> dict[tuple[int, int], list[int]]:
    """Each (subject, object) box pair of an image with the verb ids it carries."""
    out: dict[tuple[int, int], list[int]] = {}
    for p in image.pairs:
        out.setdefault((p.subject, p.object), []).append(p.verb)
    return out


def crop_name(image: HoiImage, k: int, verb: Optional[int] = None) -> str:
    """The crop of an image's ``k``-th pair; ``verb`` tells apart the crops of a pair with several verbs."""
    return f"{Path(image.file_name).stem}_pair{k}{'' if verb is None else f'_v{verb}'}.jpg"


def write_pair_situations(images: Sequence[HoiImage], image_dir: PathLike, space: HoiSpace, out: PathLike,
                          zero_shot: Optional[str], progress: bool = True) -> Path:
    """Crop every training pair into a SWiG dataset at ``out`` (train split only; a pair
    with several verbs gives one crop per verb). Returns ``out``."""
    out, image_dir = Path(out), Path(image_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    situations = hoi_situation_space(space)
    write_space(out / "space.json", situations)
    verbs = {space.verbs[v - 1] for v in seen_verbs(space, zero_shot)}
    write_split(out / SPLIT_FILE, {"seen": sorted(verbs), "rare": [], "unseen": sorted(set(space.verbs) - verbs),
                                      "params": {"hoi_zero_shot": zero_shot}})
    annotations = {}
    for image in progress_bar(images, desc="pair crops", unit="img", enabled=progress):
        pixels = load_image(image_dir / image.file_name)
        h, w = pixels.shape[:2]
        for k, ((s, o), pair_verbs) in enumerate(pair_boxes(image).items()):
            boxes = image.boxes[[s, o]]
            x1, y1 = boxes[:, :2].min(0)
            x2, y2 = boxes[:, 2:].max(0)
            mx, my = (x2 - x1) * CROP_MARGIN, (y2 - y1) * CROP_MARGIN
            cx1, cy1 = int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my)))
            cx2, cy2 = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
            crop = pixels[cy1:cy2, cx1:cx2]
            local = [[float(b[0] - cx1), float(b[1] - cy1), float(b[2] - cx1), float(b[3] - cy1)] for b in boxes]
            frame = {"agent": object_noun(PERSON), "item": object_noun(image.categories[o])}
            for verb_id in pair_verbs:
                name = crop_name(image, k, verb_id if len(pair_verbs) > 1 else None)
                cv2.imwrite(str(out / "images" / name), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
                annotations[name] = {"verb": space.verbs[verb_id - 1], "width": cx2 - cx1, "height": cy2 - cy1,
                                     "bb": dict(zip(ROLES, local)), "frames": [frame] * 3}
    write_json(out / "train.json", annotations, indent=None)
    write_json(out / "dev.json", {}, indent=None)
    log.info("pair situations: %d crops of %d images -> %s", len(annotations), len(images), out)
    return out
