"""Calibration and validation images, pre-processed exactly as the runtimes will see them:
from a dataset's training split, or from any folder of images (a user's own footage)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ..data.layouts import dataset_layout
from ..deploy.bundle import BundleManifest
from ..deploy.image import image_folder, load_image
from ..deploy.preprocess import Preprocess
from ..errors import InvalidImageError, MipdEdgeError
from ..progress import progress_bar

log = logging.getLogger(__name__)

# below this many images, INT8 ranges are estimated from too few (docs/deployment.md, "Calibration images")
RECOMMENDED_CALIBRATION_IMAGES = 300


def calibration_images(data_dir: Path, task: str, preprocess: Preprocess, count: int = 300, seed: int = 0,
                       progress: bool = True, zero_shot: Optional[str] = None,
                       folder: Optional[Path] = None) -> np.ndarray:
    """``count`` images, (N, 3, S, S): from ``folder`` (any images, no annotations, searched
    recursively) where given, else the training images of the task's dataset in its
    open-vocabulary view: no unseen verb of a situation dataset, no image whose every pair is
    of an unseen class (``zero_shot``) of an interaction dataset."""
    if folder is not None:
        loaders = folder_loaders(Path(folder))
    else:
        loaders = dataset_layout(task).images(data_dir, "train", zero_shot)
        if len(loaders) == 0:
            raise MipdEdgeError(f"no calibration images: {data_dir} has an empty training split")
    if count < 1:
        raise MipdEdgeError(f"--calib-size must be at least 1, got {count}")
    picks = np.random.default_rng(seed).permutation(len(loaders))[:count]
    out = []
    for i in progress_bar(picks, desc="calibration images", unit="img", enabled=progress):
        try:
            out.append(preprocess(loaders[int(i)]())[0])
        except InvalidImageError as exc:  # a user's folder may hold a broken file: skip it, say so
            log.warning("calibration skips %s", exc)
    if not out:
        raise MipdEdgeError(f"no readable calibration image in {folder}")
    return np.stack(out).astype(np.float32, copy=False)


def folder_loaders(folder: Path) -> Sequence[Callable[[], np.ndarray]]:
    """A loader per image file under ``folder`` (bounded like every image the SDK reads), with a
    warning where there are fewer than calibration needs."""
    files = image_folder(folder, "--calib-dir")
    if len(files) < RECOMMENDED_CALIBRATION_IMAGES:
        log.warning("--calib-dir %s holds %d images; INT8 calibration wants at least %d of the scenes the model will "
                    "see (fewer can cost accuracy)", folder, len(files), RECOMMENDED_CALIBRATION_IMAGES)
    return [lambda f=f: load_image(f) for f in files]


def hoi_selection(manifest: BundleManifest, data_dir: Path, info: Mapping[str, Any]) -> tuple[Any, set[str], list]:
    """What INT8 model selection may see of an HOI student's data: its HOI space, the names of
    the seen verbs, and the held-out training images it was selected on (no unseen class)."""
    from ..data.hico import HoiSpace, dev_holdout, seen_verbs, training_images

    space = HoiSpace.from_json(manifest.hoi_space)
    zero_shot = info["data"].get("zero_shot")
    seen = {space.verbs[v - 1] for v in seen_verbs(space, zero_shot)}
    return space, seen, dev_holdout(training_images(data_dir, zero_shot)[1], int(info["train"]["seed"]))[1]
