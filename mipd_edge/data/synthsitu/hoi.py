"""SynthSitu-HOI: several people per image, each interacting with an object, written in
the HICO-DET annotation format so the whole HOI path runs here without the real data.

Interactions are SynthSitu's item verbs (holding, kicking, watching, ...: a person and an
object, no tool, no partner) with the objects each verb allows; an HOI class is a (verb,
object) pair, as in HICO-DET. Each image shows one or two people side by side on one
textured place. ``hoi_space.json`` carries the verbs with their definitions (the same
primitive phrases as SynthSitu, so unseen verbs are recognisable from text) and two
zero-shot splits built like the published HICO-DET ones:

* ``unseen_verb``: every class of a fifth of the verbs (new combinations of primitives
  that seen verbs show, as SynthSitu's own split demands);
* ``unseen_combination``: about a sixth of the classes of the other verbs, each verb and
  object still seen in some other class (the rare-first / non-rare-first kind).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ...files import PathLike, write_json
from ..hico import PERSON, HoiSpace
from ..split import build_split
from . import world
from .generate import render_jobs
from .render import background, draw, layout, to_pixels, union

log = logging.getLogger(__name__)

VERSION = 1
SPLIT_CODES = {"trainval": 10, "test": 11}
MAX_PEOPLE = 2
PEOPLE_P = (0.5, 0.5)  # one or two people: objects stay large enough to box at edge input sizes


def hoi_verbs() -> list[world.VerbSpec]:
    return [v for v in world.VERBS if v.relation != "none" and not v.tool and v.partner == "none"]


def object_ids() -> dict[str, int]:
    """Dataset ids of the objects: 1 is the person (as in COCO), then the items."""
    return {"person": PERSON, **{key: i + 2 for i, key in enumerate(world.nouns_of("item"))}}


def hoi_space(seed: int = 0) -> HoiSpace:
    verbs, ids = hoi_verbs(), object_ids()
    classes = tuple((v + 1, ids[item]) for v, verb in enumerate(verbs) for item in verb.items)
    split = build_split([v.name for v in verbs], 0.2, 0.0, 1, seed, accept=world.covered_by_seen)
    unseen_verbs = {i + 1 for i, v in enumerate(verbs) if v.name in split["unseen"]}
    unseen_verb = tuple(i for i, (v, _) in enumerate(classes) if v in unseen_verbs)
    rng = np.random.default_rng([seed, 7])
    combination: list[int] = []
    for i in rng.permutation(len(classes)):
        verb, obj = classes[i]
        if verb in unseen_verbs or len(combination) >= len(classes) // 6:
            continue
        left = [c for j, c in enumerate(classes) if j != i and j not in combination and classes[j][0] not in
                unseen_verbs]
        if any(v == verb for v, _ in left) and any(o == obj for _, o in left):
            combination.append(int(i))
    objects = {i: key for key, i in ids.items()}
    return HoiSpace("synthsitu-hoi", tuple(v.name for v in verbs), objects, classes,
                    {"unseen_verb": unseen_verb, "unseen_combination": tuple(sorted(combination))},
                    definitions={v.name: v.definition() for v in verbs})


def make_image(seed: int, split: str, index: int, classes: list[tuple[int, int]], image_size: int,
               space: HoiSpace) -> tuple[np.ndarray, dict]:
    """One image with ``len(classes)`` people and its HICO-DET annotation entry."""
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
    verbs, items = hoi_verbs(), {i: k for k, i in object_ids().items()}
    width = image_size
    height = int(round(image_size * rng.uniform(0.6, 0.75)))
    place = str(rng.choice(world.nouns_of("place")))
    scenes = []
    for verb_id, obj in classes:
        verb = verbs[verb_id - 1]
        fillers = {"agent": str(rng.choice(world.nouns_of("agent"))), "item": items[obj], "place": place}
        shapes = layout(verb, fillers, rng)
        scenes.append((verb_id, obj, shapes, union(shapes)))
    slot = width / len(scenes)
    scale = min(min(0.9 * slot / (e[2] - e[0]), 0.6 * height / (e[3] - e[1])) for *_, e in scenes)
    scale *= rng.uniform(0.75, 1.0)
    ground_y = rng.uniform(0.82, 0.94) * height
    ground_y = min(ground_y, height - 2 - max(0.0, -min(e[1] for *_, e in scenes)) * scale)
    horizon = int(max(2, min(ground_y - max(e[3] for *_, e in scenes) * scale * 0.5, height * 0.55)
                      * rng.uniform(0.6, 0.9)))
    canvas = np.clip(background(place, height, width, horizon, rng), 0, 255).astype(np.uint8)
    annotations, hois = [], []
    for k, (verb_id, obj, shapes, ext) in enumerate(scenes):
        facing = 1 if rng.random() < 0.5 else -1
        span = (ext[2] - ext[0]) * scale
        left = k * slot + rng.uniform(1, max(2, slot - span - 1))
        x0 = left - ext[0] * scale if facing == 1 else left + ext[2] * scale
        pix = to_pixels(shapes, scale, (x0, ground_y), facing)
        draw(canvas, pix)
        for role, category in (("agent", PERSON), ("item", obj)):
            x1, y1, x2, y2 = np.clip(union([s for s in pix if s.role == role]), 0, [width, height, width, height])
            annotations.append({"bbox": [int(np.floor(x1)), int(np.floor(y1)), int(np.ceil(x2)), int(np.ceil(y2))],
                                "category_id": int(category)})
        hois.append({"subject_id": 2 * k, "object_id": 2 * k + 1, "category_id": int(verb_id),
                     "hoi_category_id": int(space.class_of(verb_id, obj)) + 1})
    noise = rng.normal(0, 3.0, canvas.shape) + rng.uniform(-12, 12)
    canvas = np.clip(canvas.astype(np.float32) * rng.uniform(0.9, 1.1) + noise, 0, 255).astype(np.uint8)
    return canvas, {"width": width, "height": height, "annotations": annotations, "hoi_annotation": hois}


def class_schedule(split: str, count: int, seed: int, space: HoiSpace) -> list[list[tuple[int, int]]]:
    """The classes each image shows: every class equally often, people per image varying."""
    rng = np.random.default_rng([seed, SPLIT_CODES[split], 99])
    people = rng.choice(np.arange(1, MAX_PEOPLE + 1), size=count, p=PEOPLE_P)
    total = int(people.sum())
    order = np.concatenate([rng.permutation(len(space.classes)) for _ in range(total // len(space.classes) + 1)])
    out, at = [], 0
    for n in people:
        out.append([space.classes[int(i)] for i in order[at:at + n]])
        at += n
    return out


def _render_chunk(job: tuple) -> list[tuple[str, dict]]:
    seed, split, image_dir, image_size, items, space_json = job
    space = HoiSpace.from_json(space_json)
    out = []
    for index, name, classes in items:
        image, entry = make_image(seed, split, index, classes, image_size, space)
        cv2.imwrite(str(Path(image_dir) / name), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append((name, entry))
    return out


@dataclass(frozen=True)
class SynthHoiConfig:
    """A SynthSitu-HOI sample (``mipd-edge data synth --task hoi``), in the HICO-DET layout."""

    seed: int = 0  # the generator seed
    trainval: int = 2400  # trainval images
    test: int = 600  # test images
    image_size: int = 224  # the width, pixels
    workers: Optional[int] = None  # processes (default: one per core)


def generate_hoi(out: PathLike, cfg: SynthHoiConfig = SynthHoiConfig(), progress: bool = True) -> dict:
    """Write ``out/{images/, hoi_space.json, trainval_hico.json, test_hico.json}``."""
    seed, trainval, test, image_size, workers = cfg.seed, cfg.trainval, cfg.test, cfg.image_size, cfg.workers
    out = Path(out)
    image_dir = out / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    space = hoi_space(seed)
    space.save(out / "hoi_space.json")
    start = time.perf_counter()
    jobs, order, counter = [], {}, 0
    for split, count in (("trainval", trainval), ("test", test)):
        items = []
        for i, classes in enumerate(class_schedule(split, count, seed, space)):
            items.append((i, f"{split}_{counter:06d}.jpg", classes))
            counter += 1
        order[split] = [name for _, name, _ in items]
        jobs += [(seed, split, str(image_dir), image_size, items[i:i + 64], space.to_json())
                 for i in range(0, len(items), 64)]
    entries = render_jobs(_render_chunk, jobs, counter, workers, "SynthSitu-HOI", progress)
    for split, names in order.items():
        write_json(out / f"{split}_hico.json", [{"file_name": n, **entries[n]} for n in names], indent=None)
    manifest = {"generator": "synthsitu-hoi", "version": VERSION, "seed": seed, "trainval": trainval, "test": test,
                "image_size": image_size, "verbs": len(space.verbs), "classes": len(space.classes),
                "seconds": round(time.perf_counter() - start, 2)}
    write_json(out / "synthsitu_hoi.json", manifest)
    log.info("SynthSitu-HOI: %d images in %.1f s -> %s", counter, manifest["seconds"], out)
    return manifest
