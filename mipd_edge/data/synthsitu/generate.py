"""Writing a SynthSitu dataset to disk in exactly the SWiG format.

Every image is drawn from its own generator seeded by (seed, split, index), so the
dataset is the same for a seed whatever the number of worker processes, and a single
image can be regenerated on its own.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from ...files import PathLike, write_json
from ...progress import progress_bar
from ..split import SPLIT_FILE, build_split, write_split
from ..swig import SituSpace, write_space
from . import world
from .render import render

log = logging.getLogger(__name__)

VERSION = 1
SPLIT_CODES = {"train": 0, "dev": 1, "test": 2, "footage": 3}  # one generator stream each
FOOTAGE_MANIFEST = "synthsitu-footage.json"
HYPERNYM_RATE = 0.2  # how often one annotator names the hypernym (person for man)
EMPTY_PLACE_RATE = 0.04  # how often one annotator leaves the place empty


def space() -> SituSpace:
    return SituSpace(frames=world.frames(), nouns=world.nouns())


def choose_fillers(verb: world.VerbSpec, rng: np.random.Generator) -> dict[str, str]:
    agents = world.nouns_of("agent")
    fillers = {"agent": str(rng.choice(agents)), "place": str(rng.choice(world.nouns_of("place")))}
    if "item" in verb.roles:
        fillers["item"] = str(rng.choice(verb.items))
    if verb.tool:
        fillers["tool"] = str(rng.choice(verb.tools))
    if verb.partner == "person":
        fillers[verb.roles[-2]] = str(rng.choice([a for a in agents if a != fillers["agent"]]))
    elif verb.partner == "container":
        fillers[verb.roles[-2]] = str(rng.choice(world.nouns_of("container")))
    return fillers


def annotator_frames(fillers: dict[str, str], rng: np.random.Generator, n: int = 3) -> list[dict[str, str]]:
    """Three annotators who mostly agree: some say 'person' for 'man', a few skip the place."""
    frames = []
    for _ in range(n):
        frame = {}
        for role, key in fillers.items():
            hyper = world.NOUN_BY_KEY[key].hypernym
            if role == "place" and rng.random() < EMPTY_PLACE_RATE:
                frame[role] = ""
            elif hyper and rng.random() < HYPERNYM_RATE:
                frame[role] = world.noun_id(hyper)
            else:
                frame[role] = world.noun_id(key)
        frames.append(frame)
    return frames


def make_image(seed: int, split: str, index: int, verb_name: str, image_size: int) -> tuple[np.ndarray, dict]:
    """One image and its SWiG annotation entry."""
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
    verb = world.VERB_BY_NAME[verb_name]
    long_side, short_side = image_size, int(round(image_size * rng.uniform(0.75, 1.0)))
    width, height = (long_side, short_side) if rng.random() < 0.75 else (short_side, long_side)
    fillers = choose_fillers(verb, rng)
    used = set(fillers.values())
    pool = [k for k in world.nouns_of("item") if k not in used]
    distractors = [str(k) for k in rng.choice(pool, size=rng.choice([0, 1, 2], p=[0.5, 0.35, 0.15]), replace=False)]
    image, boxes = render(verb, fillers, width, height, rng, distractors)
    entry = {"verb": verb_name, "height": height, "width": width,
             "bb": {r: boxes.get(r, [-1, -1, -1, -1]) for r in verb.roles},
             "frames": annotator_frames({r: fillers[r] for r in verb.roles}, rng)}
    return image, entry


def _render_chunk(job: tuple) -> list[tuple[str, dict]]:
    seed, split, image_dir, image_size, items = job
    out = []
    for index, name, verb in items:
        image, entry = make_image(seed, split, index, verb, image_size)
        cv2.imwrite(str(Path(image_dir) / name), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append((name, entry))
    return out


def render_jobs(render_chunk: Callable[[tuple], list[tuple[str, dict]]], jobs: list[tuple], total: int,
                workers: Optional[int], desc: str, progress: bool) -> dict[str, dict]:
    """Run chunks of image jobs, in worker processes when there are enough images to pay
    for them; image name -> annotation entry."""
    entries: dict[str, dict] = {}
    parallel = workers != 1 and total >= 200
    with ProcessPoolExecutor(max_workers=workers) if parallel else nullcontext() as pool, \
            progress_bar(total=total, desc=desc, unit="img", enabled=progress) as bar:
        for chunk in (pool.map if parallel else map)(render_chunk, jobs):
            entries.update(chunk)
            bar.update(len(chunk))
    return entries


def verb_schedule(split: str, count: int, seed: int) -> list[str]:
    """Which verb each image shows: train near-balanced in shuffled order, dev/test round robin."""
    names = [v.name for v in world.VERBS]
    if split != "train":
        return [names[i % len(names)] for i in range(count)]
    rng = np.random.default_rng([seed, 99])
    verbs = [names[i % len(names)] for i in range(count)]
    return [verbs[i] for i in rng.permutation(count)]


@dataclass(frozen=True)
class SynthConfig:
    """A SynthSitu sample (``mipd-edge data synth``)."""

    seed: int = 0  # the generator seed: the same seed gives the same dataset
    train: int = 4800  # training images, before the unseen verbs are dropped
    dev: int = 480  # dev images (model selection; every verb)
    test: int = 960  # test images (every verb)
    image_size: int = 192  # the long side, pixels
    workers: Optional[int] = None  # processes (default: one per core)
    unseen_frac: float = 0.2  # share of the verbs held out of training entirely
    rare_frac: float = 0.2  # share of the verbs kept with few training images
    rare_images: int = 10  # training images kept of each rare verb


@dataclass(frozen=True)
class FootageConfig:
    """Unlabeled SynthSitu images (``mipd-edge data footage``)."""

    seed: int = 2000  # the generator seed (images also differ from any dataset's of the same seed)
    images: int = 2000  # how many, every verb about equally often
    image_size: int = 192  # the long side, pixels
    workers: Optional[int] = None  # processes (default: one per core)


def generate_footage(out: PathLike, cfg: FootageConfig = FootageConfig(), progress: bool = True) -> dict:
    """Write ``out/frame_NNNNNN.jpg``: the same world as a SynthSitu dataset, every verb (unseen
    ones too), but no annotation and file names that say nothing, as a deployment's own
    footage would come. The images are drawn from a generator stream of their own
    (``SPLIT_CODES["footage"]``), so they are none of a dataset's, whatever its seed."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    items = [(i, f"frame_{i:06d}.jpg", verb) for i, verb in enumerate(verb_schedule("train", cfg.images, cfg.seed))]
    jobs = [(cfg.seed, "footage", str(out), cfg.image_size, items[i:i + 64]) for i in range(0, len(items), 64)]
    render_jobs(_render_chunk, jobs, len(items), cfg.workers, "SynthSitu footage", progress)  # annotations dropped
    manifest = {"generator": "synthsitu-footage", "version": VERSION, "seed": cfg.seed, "images": cfg.images,
                "image_size": cfg.image_size, "seconds": round(time.perf_counter() - start, 2)}
    write_json(out / FOOTAGE_MANIFEST, manifest)
    log.info("SynthSitu footage: %d unlabeled images in %.1f s -> %s", cfg.images, manifest["seconds"], out)
    return manifest


def generate(out: PathLike, cfg: SynthConfig = SynthConfig(), progress: bool = True) -> dict:
    """Write ``out/{images/, space.json, train.json, dev.json, test.json, splits.json}``."""
    seed, train, dev, test, image_size, workers = cfg.seed, cfg.train, cfg.dev, cfg.test, cfg.image_size, cfg.workers
    unseen_frac, rare_frac, rare_images = cfg.unseen_frac, cfg.rare_frac, cfg.rare_images
    out = Path(out)
    image_dir = out / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    write_space(out / "space.json", space())
    split = build_split([v.name for v in world.VERBS], unseen_frac, rare_frac, rare_images, seed,
                        accept=world.covered_by_seen)
    write_split(out / SPLIT_FILE, split)

    start = time.perf_counter()
    counter = 0
    jobs, order = [], {}
    for name_split, count in (("train", train), ("dev", dev), ("test", test)):
        items = []
        for i, verb in enumerate(verb_schedule(name_split, count, seed)):
            items.append((i, f"{verb}_{counter:06d}.jpg", verb))
            counter += 1
        order[name_split] = [n for _, n, _ in items]
        jobs += [(seed, name_split, str(image_dir), image_size, items[i:i + 64]) for i in range(0, len(items), 64)]

    entries = render_jobs(_render_chunk, jobs, counter, workers, "SynthSitu", progress)
    for name_split, names in order.items():
        write_json(out / f"{name_split}.json", {n: entries[n] for n in names}, indent=None)
    seconds = time.perf_counter() - start
    manifest = {"generator": "synthsitu", "version": VERSION, "seed": seed, "train": train, "dev": dev,
                "test": test, "image_size": image_size, "verbs": len(world.VERBS), "nouns": len(world.NOUNS),
                "seconds": round(seconds, 2)}
    write_json(out / "synthsitu.json", manifest)
    log.info("SynthSitu: %d images in %.1f s -> %s", counter, seconds, out)
    return manifest
